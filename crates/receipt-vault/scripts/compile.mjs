// Compiles crates/receipt-vault/contracts with the pinned solcjs and writes
// one deterministic JSON artifact per deployable contract:
//   {"contractName", "abi", "bytecode": {"object"}, "deployedBytecode": {"object"}}
// (the shape alloy's `sol!` accepts). Usage: node compile.mjs <out-dir>
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const crateDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const repoRoot = path.resolve(crateDir, "..", "..");
const nodeModules = path.join(repoRoot, "node_modules");

let solc;
try {
  solc = require(path.join(nodeModules, "solc"));
} catch {
  console.error("solc not found: run `npm ci --ignore-scripts` at the repository root");
  process.exit(1);
}

const SOLC_VERSION = "0.8.30";
if (!solc.version().startsWith(`${SOLC_VERSION}+`)) {
  console.error(`expected solc ${SOLC_VERSION}, got ${solc.version()}`);
  process.exit(1);
}

// Contracts whose artifacts the Rust crate binds to.
const CONTRACTS = {
  "contracts/concrete/OffchainAssetReceiptVault.sol": "OffchainAssetReceiptVault",
  "contracts/concrete/Receipt.sol": "Receipt",
  "contracts/concrete/OffchainAssetReceiptVaultAuthorizerV1.sol":
    "OffchainAssetReceiptVaultAuthorizerV1",
  "contracts/concrete/CloneFactory.sol": "CloneFactory",
};

const outDir = path.resolve(process.argv[2] ?? path.join(crateDir, "artifacts"));

const sources = {};
for (const file of Object.keys(CONTRACTS)) {
  sources[file] = { content: fs.readFileSync(path.join(crateDir, file), "utf8") };
}

// Resolves `@openzeppelin/...` from node_modules and relative imports (which
// solc hands us already joined to the importing file's key) from the crate.
function findImports(importPath) {
  const base = importPath.startsWith("@openzeppelin/")
    ? nodeModules
    : crateDir;
  const file = path.join(base, importPath);
  if (!file.startsWith(base + path.sep)) {
    return { error: `import escapes its root: ${importPath}` };
  }
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch {
    return { error: `file not found: ${importPath}` };
  }
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "cancun",
    optimizer: { enabled: true, runs: 1000 },
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: {
      "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
    },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

let failed = false;
for (const diagnostic of output.errors ?? []) {
  // 2018: "can be restricted to view/pure". Rain's ABI declares
  // `authorize` non-view on the authorizer and view on the vault; we keep
  // that ABI on purpose.
  if (diagnostic.severity === "warning" && diagnostic.errorCode === "2018") {
    continue;
  }
  console.error(diagnostic.formattedMessage);
  if (diagnostic.severity === "error") failed = true;
}
if (failed) process.exit(1);

// EIP-170 runtime size limit: anvil and real chains refuse larger code.
const MAX_RUNTIME_BYTES = 24576;

fs.mkdirSync(outDir, { recursive: true });
for (const [file, name] of Object.entries(CONTRACTS)) {
  const contract = output.contracts?.[file]?.[name];
  if (!contract) {
    console.error(`missing compiler output for ${file}:${name}`);
    process.exit(1);
  }
  const runtimeBytes = contract.evm.deployedBytecode.object.length / 2;
  if (runtimeBytes > MAX_RUNTIME_BYTES) {
    console.error(`${name}: runtime code is ${runtimeBytes} bytes, over ${MAX_RUNTIME_BYTES}`);
    process.exit(1);
  }
  const artifact = {
    contractName: name,
    compiler: { solc: solc.version(), settings: input.settings },
    abi: contract.abi,
    bytecode: { object: `0x${contract.evm.bytecode.object}` },
    deployedBytecode: { object: `0x${contract.evm.deployedBytecode.object}` },
  };
  fs.writeFileSync(path.join(outDir, `${name}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
  console.log(`${name}: ${runtimeBytes} bytes runtime`);
}
