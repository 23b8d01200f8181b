{
  description = "issuance-bot: Alpaca ITN issuer service";

  # flake.lock is not committed yet: it cannot be generated without
  # access to GitHub. On a machine with Nix, `nix flake lock` writes it
  # (commit it); see docs/operations.md, "Building with Nix".
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    rust-overlay.url = "github:oxalica/rust-overlay";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs = { self, nixpkgs, rust-overlay, flake-utils }:
    flake-utils.lib.eachDefaultSystem (system:
      let
        pkgs = import nixpkgs {
          inherit system;
          overlays = [ (import rust-overlay) ];
        };
        toolchain = pkgs.rust-bin.stable."1.95.0".default.override {
          extensions = [ "rustfmt" "clippy" "rust-src" ];
        };
        rustPlatform = pkgs.makeRustPlatform {
          cargo = toolchain;
          rustc = toolchain;
        };
      in {
        # The service binary. Contract artifacts are committed, so the build
        # needs neither Node nor solc.
        packages.default = rustPlatform.buildRustPackage {
          pname = "issuance-bot";
          version = "0.1.0";
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "--bin" "issuance-bot" ];
          doCheck = false; # tests need anvil from npm; run ./scripts/test
          # The unit's Documentation= points here.
          postInstall = ''
            install -D -m 0644 docs/operations.md $out/share/doc/issuance-bot/operations.md
          '';
        };

        devShells.default = pkgs.mkShell {
          packages = [
            toolchain
            pkgs.cargo-nextest
            pkgs.sqlx-cli
            pkgs.nodejs_20
            pkgs.sqlite
          ];
        };
      })
    // {
      # services.issuance-bot: the hardened unit of
      # deploy/issuance-bot.service, with this flake's package.
      nixosModules.default = { lib, pkgs, ... }: {
        imports = [ ./deploy/nixos/issuance-bot.nix ];
        services.issuance-bot.package =
          lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      };
    };
}
