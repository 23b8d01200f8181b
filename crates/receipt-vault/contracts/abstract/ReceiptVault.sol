// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ERC165} from "@openzeppelin/contracts/utils/introspection/ERC165.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";

import {ICloneableV2, ICloneableFactoryV2} from "../interface/ICloneableV2.sol";
import {
    IReceiptManagerV2,
    UnmanagedReceiptTransfer
} from "../interface/IReceiptManagerV2.sol";
import {IReceiptV3} from "../interface/IReceiptV3.sol";
import {IReceiptVaultV3} from "../interface/IReceiptVaultV3.sol";
import {
    InvalidId,
    MinShareRatio,
    WrongManager,
    ZeroAssetsAmount,
    ZeroOwner,
    ZeroReceiver,
    ZeroSharesAmount
} from "../error/ErrReceiptVault.sol";

/// Immutable construction config of a vault implementation; every clone
/// shares it.
struct ReceiptVaultConstructionConfigV2 {
    ICloneableFactoryV2 factory;
    IReceiptV3 receiptImplementation;
}

/// `asset` must be zero for the off-chain asset vault.
struct VaultConfig {
    address asset;
    string name;
    string symbol;
}

struct ReceiptVaultConfigV2 {
    address receipt;
    VaultConfig vaultConfig;
}

/// @title ReceiptVault
/// ERC-4626-like vault whose every share mint/burn is paired 1:1 with a mint
/// or burn of an ERC-1155 receipt (a separate contract) under an `id`.
/// Behaviour mirrors Rain's ethgild `ReceiptVault` (OZ 4.9) on OZ v5:
/// - the share ratio is fixed at 1e18, so amounts never round;
/// - balance and allowance failures raise the OZ v4 revert strings;
/// - `multicall` delegatecalls to self, keeping `msg.sender`.
abstract contract ReceiptVault is
    IReceiptManagerV2,
    IReceiptVaultV3,
    ICloneableV2,
    Initializable,
    Multicall,
    ReentrancyGuard,
    ERC20,
    ERC165
{
    /// One share per asset, in 18-decimal fixed point.
    uint256 internal constant SHARE_RATIO = 1e18;

    ICloneableFactoryV2 internal immutable iFactory;
    IReceiptV3 internal immutable iReceiptImplementation;

    address internal sAsset;
    IReceiptV3 internal sReceipt;
    // OZ v5 ERC20 only sets name/symbol in its constructor, which never runs
    // for a clone, so the clone keeps its own copies.
    string private sName;
    string private sSymbol;

    constructor(ReceiptVaultConstructionConfigV2 memory config)
        ERC20("", "")
    {
        _disableInitializers();
        iFactory = config.factory;
        iReceiptImplementation = config.receiptImplementation;
    }

    /// Payable entry points refund the vault's ETH balance, so the vault
    /// accepts ETH. Unknown selectors succeed with empty return data, as on
    /// Rain's vault.
    fallback() external payable {}

    receive() external payable {}

    // solhint-disable-next-line func-name-mixedcase
    function __ReceiptVault_init(VaultConfig memory config) internal {
        sName = config.name;
        sSymbol = config.symbol;
        sAsset = config.asset;

        IReceiptV3 managedReceipt = IReceiptV3(
            iFactory.clone(
                address(iReceiptImplementation), abi.encode(address(this))
            )
        );
        sReceipt = managedReceipt;

        address receiptManager = managedReceipt.manager();
        if (receiptManager != address(this)) {
            revert WrongManager(address(this), receiptManager);
        }
    }

    function name() public view override returns (string memory) {
        return sName;
    }

    function symbol() public view override returns (string memory) {
        return sSymbol;
    }

    function supportsInterface(bytes4 interfaceId)
        public
        view
        virtual
        override
        returns (bool)
    {
        return interfaceId == type(IReceiptManagerV2).interfaceId
            || interfaceId == type(ICloneableV2).interfaceId
            || interfaceId == type(IReceiptVaultV3).interfaceId
            || super.supportsInterface(interfaceId);
    }

    function asset() external view returns (address) {
        return sAsset;
    }

    function totalAssets() external view returns (uint256) {
        return totalSupply();
    }

    function receipt() public view returns (IReceiptV3) {
        return sReceipt;
    }

    /// Only the managed receipt may ask; concrete vaults add their checks.
    function authorizeReceiptTransfer3(
        address operator,
        address from,
        address to,
        uint256[] memory ids,
        uint256[] memory amounts
    ) public virtual {
        if (msg.sender != address(sReceipt)) {
            revert UnmanagedReceiptTransfer();
        }
        (operator, from, to, ids, amounts);
    }

    function receiptVaultInformation(bytes memory vaultInformation) external {
        emit ReceiptVaultInformation(msg.sender, vaultInformation);
    }

    // ---- Previews and conversions (ratio is always 1:1). ----

    function convertToShares(uint256 assets, uint256)
        external
        payable
        returns (uint256)
    {
        _refund();
        return assets;
    }

    function convertToAssets(uint256 shares, uint256)
        external
        pure
        returns (uint256)
    {
        return shares;
    }

    function previewDeposit(uint256 assets, uint256 minShareRatio)
        external
        payable
        returns (uint256)
    {
        _checkMinShareRatio(minShareRatio);
        _refund();
        return assets;
    }

    function previewMint(uint256 shares, uint256 minShareRatio)
        external
        payable
        returns (uint256)
    {
        _checkMinShareRatio(minShareRatio);
        _refund();
        return shares;
    }

    function previewWithdraw(uint256 assets, uint256)
        external
        pure
        returns (uint256)
    {
        return assets;
    }

    function previewRedeem(uint256 shares, uint256)
        external
        pure
        returns (uint256)
    {
        return shares;
    }

    function maxDeposit(address) external pure returns (uint256) {
        return type(uint256).max;
    }

    function maxMint(address) external pure returns (uint256) {
        return type(uint256).max;
    }

    /// Limited by the receipt balance only, as in Rain.
    function maxWithdraw(address owner, uint256 id)
        external
        view
        returns (uint256)
    {
        return sReceipt.balanceOf(owner, id);
    }

    function maxRedeem(address owner, uint256 id)
        external
        view
        returns (uint256)
    {
        return sReceipt.balanceOf(owner, id);
    }

    // ---- Deposit family. ----

    /// Mints `assets` shares and `assets` of a new receipt id to `receiver`.
    function deposit(
        uint256 assets,
        address receiver,
        uint256 depositMinShareRatio,
        bytes memory receiptInformation
    ) external payable returns (uint256) {
        uint256 id = _nextId();
        _checkMinShareRatio(depositMinShareRatio);
        _deposit(assets, receiver, assets, id, receiptInformation);
        _refund();
        return assets;
    }

    /// As `deposit`, driven by the share amount.
    function mint(
        uint256 shares,
        address receiver,
        uint256 mintMinShareRatio,
        bytes memory receiptInformation
    ) external payable returns (uint256) {
        uint256 id = _nextId();
        _checkMinShareRatio(mintMinShareRatio);
        _deposit(shares, receiver, shares, id, receiptInformation);
        _refund();
        return shares;
    }

    // ---- Withdraw family. ----

    function withdraw(
        uint256 assets,
        address receiver,
        address owner,
        uint256 id,
        bytes memory receiptInformation
    ) external returns (uint256) {
        _withdraw(assets, receiver, owner, assets, id, receiptInformation);
        return assets;
    }

    /// Burns `shares` and `shares` of receipt `id` from `owner`. `receiver`
    /// only appears in the event: the asset is off-chain.
    function redeem(
        uint256 shares,
        address receiver,
        address owner,
        uint256 id,
        bytes memory receiptInformation
    ) external returns (uint256) {
        _withdraw(shares, receiver, owner, shares, id, receiptInformation);
        return shares;
    }

    // ---- ERC-20 with OZ v4 revert strings. ----

    function transfer(address to, uint256 value)
        public
        override
        returns (bool)
    {
        require(to != address(0), "ERC20: transfer to the zero address");
        return super.transfer(to, value);
    }

    /// v4 order: allowance first, then the address checks, then the hook.
    function transferFrom(address from, address to, uint256 value)
        public
        override
        returns (bool)
    {
        _spendAllowance(from, msg.sender, value);
        require(from != address(0), "ERC20: transfer from the zero address");
        require(to != address(0), "ERC20: transfer to the zero address");
        _transfer(from, to, value);
        return true;
    }

    function approve(address spender, uint256 value)
        public
        override
        returns (bool)
    {
        require(spender != address(0), "ERC20: approve to the zero address");
        return super.approve(spender, value);
    }

    function increaseAllowance(address spender, uint256 addedValue)
        external
        returns (bool)
    {
        require(spender != address(0), "ERC20: approve to the zero address");
        _approve(
            msg.sender, spender, allowance(msg.sender, spender) + addedValue
        );
        return true;
    }

    function decreaseAllowance(address spender, uint256 subtractedValue)
        external
        returns (bool)
    {
        uint256 current = allowance(msg.sender, spender);
        require(
            current >= subtractedValue,
            "ERC20: decreased allowance below zero"
        );
        unchecked {
            _approve(msg.sender, spender, current - subtractedValue);
        }
        return true;
    }

    // ---- Hooks for concrete vaults. ----

    /// Next receipt id for `deposit`/`mint`.
    function _nextId() internal view virtual returns (uint256);

    /// Runs after the `Deposit` event, before any token moves.
    function _beforeDeposit(uint256 id) internal virtual;

    /// Runs last in a deposit; the authorization point.
    function _afterDeposit(
        uint256 assets,
        address receiver,
        uint256 shares,
        uint256 id,
        bytes memory receiptInformation
    ) internal virtual;

    /// Runs last in a withdraw; the authorization point.
    function _afterWithdraw(
        uint256 assets,
        address receiver,
        address owner,
        uint256 shares,
        uint256 id,
        bytes memory receiptInformation
    ) internal virtual;

    /// Runs before every share balance change (mint, burn, transfer).
    function _beforeShareUpdate(address from, address to, uint256 amount)
        internal
        virtual;

    // ---- Internals. ----

    function _deposit(
        uint256 assets,
        address receiver,
        uint256 shares,
        uint256 id,
        bytes memory receiptInformation
    ) internal nonReentrant {
        if (assets == 0) revert ZeroAssetsAmount();
        if (shares == 0) revert ZeroSharesAmount();
        if (receiver == address(0)) revert ZeroReceiver();
        if (id == 0) revert InvalidId(0);

        emit Deposit(
            msg.sender, receiver, assets, shares, id, receiptInformation
        );
        _beforeDeposit(id);

        _mint(receiver, shares);
        sReceipt.managerMint(
            msg.sender, receiver, id, shares, receiptInformation
        );

        _afterDeposit(assets, receiver, shares, id, receiptInformation);
    }

    function _withdraw(
        uint256 assets,
        address receiver,
        address owner,
        uint256 shares,
        uint256 id,
        bytes memory receiptInformation
    ) internal nonReentrant {
        if (assets == 0) revert ZeroAssetsAmount();
        if (shares == 0) revert ZeroSharesAmount();
        if (receiver == address(0)) revert ZeroReceiver();
        if (owner == address(0)) revert ZeroOwner();
        if (id == 0) revert InvalidId(0);

        emit Withdraw(
            msg.sender, receiver, owner, assets, shares, id, receiptInformation
        );

        // Burning for someone else needs both their share allowance and
        // receipt operator approval.
        if (owner != msg.sender) {
            _spendAllowance(owner, msg.sender, shares);
            require(
                sReceipt.isApprovedForAll(owner, msg.sender),
                "ERC1155: caller is not token owner or approved"
            );
        }

        _burn(owner, shares);
        sReceipt.managerBurn(msg.sender, owner, id, shares, receiptInformation);

        _afterWithdraw(
            assets, receiver, owner, shares, id, receiptInformation
        );
    }

    /// Hook first, then the v4-style balance check, so authorization and
    /// freeze errors win over balance errors exactly as in Rain.
    function _update(address from, address to, uint256 value)
        internal
        override
    {
        _beforeShareUpdate(from, to, value);
        if (from != address(0) && balanceOf(from) < value) {
            revert(
                to == address(0)
                    ? "ERC20: burn amount exceeds balance"
                    : "ERC20: transfer amount exceeds balance"
            );
        }
        super._update(from, to, value);
    }

    /// v4 semantics: an unlimited allowance is untouched; otherwise the
    /// reduced allowance is re-emitted as `Approval`.
    function _spendAllowance(address owner, address spender, uint256 value)
        internal
        override
    {
        uint256 current = allowance(owner, spender);
        if (current != type(uint256).max) {
            require(current >= value, "ERC20: insufficient allowance");
            unchecked {
                _approve(owner, spender, current - value, true);
            }
        }
    }

    function _checkMinShareRatio(uint256 minShareRatio) internal pure {
        if (SHARE_RATIO < minShareRatio) {
            revert MinShareRatio(minShareRatio, SHARE_RATIO);
        }
    }

    /// Sends the whole ETH balance back to the caller, even when it is zero,
    /// as Rain does (so a contract caller without `receive` reverts).
    function _refund() internal {
        // slither-disable-next-line arbitrary-send-eth,low-level-calls
        (bool success,) = payable(msg.sender).call{
            value: address(this).balance
        }("");
        require(
            success,
            "Address: unable to send value, recipient may have reverted"
        );
    }
}
