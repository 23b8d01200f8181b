// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

import {ERC165Checker} from "@openzeppelin/contracts/utils/introspection/ERC165Checker.sol";

import {
    ReceiptVault,
    ReceiptVaultConfigV2,
    ReceiptVaultConstructionConfigV2,
    VaultConfig
} from "../abstract/ReceiptVault.sol";
import {OwnerFreezable} from "../abstract/OwnerFreezable.sol";
import {ICLONEABLE_V2_SUCCESS} from "../interface/ICloneableV2.sol";
import {IAuthorizeV1, Unauthorized} from "../interface/IAuthorizeV1.sol";
import {
    IncompatibleAuthorizer,
    InvalidId,
    NonZeroAsset,
    ZeroCertifyUntil,
    ZeroConfiscateAmount,
    ZeroInitialAdmin
} from "../error/ErrReceiptVault.sol";

// Roles and permissions: keccak256 of the name, as in Rain.
bytes32 constant CERTIFY = keccak256("CERTIFY");
bytes32 constant CONFISCATE_SHARES = keccak256("CONFISCATE_SHARES");
bytes32 constant CONFISCATE_RECEIPT = keccak256("CONFISCATE_RECEIPT");
bytes32 constant DEPOSIT = keccak256("DEPOSIT");
bytes32 constant WITHDRAW = keccak256("WITHDRAW");
// Permissions checked on every movement; never granted as roles.
bytes32 constant TRANSFER_SHARES = keccak256("TRANSFER_SHARES");
bytes32 constant TRANSFER_RECEIPT = keccak256("TRANSFER_RECEIPT");

/// `initialize(bytes)` payload of the vault.
struct OffchainAssetVaultConfigV2 {
    address initialAdmin;
    VaultConfig vaultConfig;
}

/// Emitted in `OffchainAssetReceiptVaultInitializedV2`.
struct OffchainAssetReceiptVaultConfigV2 {
    address initialAdmin;
    ReceiptVaultConfigV2 receiptVaultConfig;
}

// State changes passed to the authorizer as `abi.encode(struct)`.

struct DepositStateChange {
    address owner;
    address receiver;
    uint256 id;
    uint256 assetsDeposited;
    uint256 sharesMinted;
    bytes data;
}

struct WithdrawStateChange {
    address owner;
    address receiver;
    uint256 id;
    uint256 assetsWithdrawn;
    uint256 sharesBurned;
    bytes data;
}

struct CertifyStateChange {
    uint256 oldCertifiedUntil;
    uint256 newCertifiedUntil;
    uint256 userCertifyUntil;
    bool forceUntil;
    bytes data;
}

struct ConfiscateSharesStateChange {
    address confiscatee;
    uint256 targetAmount;
    uint256 actualAmount;
    bytes data;
}

struct ConfiscateReceiptStateChange {
    address confiscatee;
    uint256 id;
    uint256 targetAmount;
    uint256 actualAmount;
    bytes data;
}

struct TransferSharesStateChange {
    address from;
    address to;
    uint256 amount;
    bool isCertificationExpired;
}

struct TransferReceiptStateChange {
    address from;
    address to;
    uint256[] ids;
    uint256[] amounts;
    bool isCertificationExpired;
}

/// @title OffchainAssetReceiptVault
/// Receipt vault for an off-chain asset (`asset() == address(0)`), matching
/// Rain's `OffchainAssetReceiptVault` interface and check order:
/// - receipt ids are vault-wide and auto-increment from 1 (`highwaterId`);
/// - every privileged action and every movement is put to a pluggable
///   authorizer; until the owner calls `setAuthorizer` the vault itself is
///   the authorizer and refuses everything;
/// - a certification timestamp gates ordinary transfers (the authorizer
///   decides, given `isCertificationExpired`);
/// - an owner freeze and confiscation.
contract OffchainAssetReceiptVault is
    ReceiptVault,
    OwnerFreezable,
    IAuthorizeV1
{
    event AuthorizerSet(address sender, address authorizer);
    event Certify(
        address sender, uint256 certifyUntil, bool forceUntil, bytes data
    );
    event ConfiscateShares(
        address sender,
        address confiscatee,
        uint256 targetAmount,
        uint256 confiscated,
        bytes justification
    );
    event ConfiscateReceipt(
        address sender,
        address confiscatee,
        uint256 id,
        uint256 targetAmount,
        uint256 confiscated,
        bytes justification
    );
    event OffchainAssetReceiptVaultInitializedV2(
        address sender, OffchainAssetReceiptVaultConfigV2 config
    );

    uint256 private sHighwaterId;
    /// Zero initially: a fresh vault is expired.
    uint256 private sCertifiedUntil;
    IAuthorizeV1 private sAuthorizer;

    constructor(ReceiptVaultConstructionConfigV2 memory config)
        ReceiptVault(config)
    {}

    /// `data` is `abi.encode(OffchainAssetVaultConfigV2)`.
    function initialize(bytes calldata data)
        external
        initializer
        returns (bytes32)
    {
        OffchainAssetVaultConfigV2 memory config =
            abi.decode(data, (OffchainAssetVaultConfigV2));

        __ReceiptVault_init(config.vaultConfig);

        if (config.vaultConfig.asset != address(0)) revert NonZeroAsset();
        if (config.initialAdmin == address(0)) revert ZeroInitialAdmin();

        // The vault's own `authorize` always reverts, so nothing works until
        // the owner installs a real authorizer.
        sAuthorizer = IAuthorizeV1(address(this));
        emit AuthorizerSet(msg.sender, address(this));

        _transferOwnership(config.initialAdmin);

        emit OffchainAssetReceiptVaultInitializedV2(
            msg.sender,
            OffchainAssetReceiptVaultConfigV2({
                initialAdmin: config.initialAdmin,
                receiptVaultConfig: ReceiptVaultConfigV2({
                    receipt: address(sReceipt),
                    vaultConfig: config.vaultConfig
                })
            })
        );

        return ICLONEABLE_V2_SUCCESS;
    }

    function supportsInterface(bytes4 interfaceId)
        public
        view
        override
        returns (bool)
    {
        return interfaceId == type(IAuthorizeV1).interfaceId
            || super.supportsInterface(interfaceId);
    }

    /// Placeholder authorizer: refuses everything.
    function authorize(address user, bytes32 permission, bytes memory data)
        external
        view
        override
    {
        // Reading state keeps this `view`, as in Rain's ABI.
        (sAuthorizer);
        revert Unauthorized(user, permission, data);
    }

    function authorizer() external view returns (IAuthorizeV1) {
        return sAuthorizer;
    }

    function setAuthorizer(IAuthorizeV1 newAuthorizer) external onlyOwner {
        if (
            !ERC165Checker.supportsInterface(
                address(newAuthorizer), type(IAuthorizeV1).interfaceId
            )
        ) {
            revert IncompatibleAuthorizer();
        }
        sAuthorizer = newAuthorizer;
        emit AuthorizerSet(msg.sender, address(newAuthorizer));
    }

    function highwaterId() external view returns (uint256) {
        return sHighwaterId;
    }

    function isCertificationExpired() public view returns (bool) {
        return block.timestamp > sCertifiedUntil;
    }

    /// Raises certification to `certifyUntil` (or sets it when forced). A
    /// lower, unforced value is ignored rather than rejected.
    function certify(
        uint256 certifyUntil,
        bool forceUntil,
        bytes memory data
    ) external {
        if (certifyUntil == 0) revert ZeroCertifyUntil();

        uint256 oldCertifiedUntil = sCertifiedUntil;
        if (forceUntil || certifyUntil > oldCertifiedUntil) {
            sCertifiedUntil = certifyUntil;
        }
        emit Certify(msg.sender, certifyUntil, forceUntil, data);

        _authorize(
            msg.sender,
            CERTIFY,
            abi.encode(
                CertifyStateChange({
                    oldCertifiedUntil: oldCertifiedUntil,
                    newCertifiedUntil: sCertifiedUntil,
                    userCertifyUntil: certifyUntil,
                    forceUntil: forceUntil,
                    data: data
                })
            )
        );
    }

    /// Adds to an existing receipt id; does not move the highwater mark.
    function redeposit(
        uint256 assets,
        address receiver,
        uint256 id,
        bytes memory receiptInformation
    ) external returns (uint256) {
        if (id > sHighwaterId) revert InvalidId(id);
        _deposit(assets, receiver, assets, id, receiptInformation);
        return assets;
    }

    /// Moves up to `targetAmount` shares from `confiscatee` to the caller.
    function confiscateShares(
        address confiscatee,
        uint256 targetAmount,
        bytes memory data
    ) external nonReentrant returns (uint256) {
        if (targetAmount == 0) revert ZeroConfiscateAmount();

        uint256 balance = balanceOf(confiscatee);
        uint256 actual = balance < targetAmount ? balance : targetAmount;
        if (actual > 0) {
            emit ConfiscateShares(
                msg.sender, confiscatee, targetAmount, actual, data
            );
            _transfer(confiscatee, msg.sender, actual);
        }

        _authorize(
            msg.sender,
            CONFISCATE_SHARES,
            abi.encode(
                ConfiscateSharesStateChange({
                    confiscatee: confiscatee,
                    targetAmount: targetAmount,
                    actualAmount: actual,
                    data: data
                })
            )
        );
        return actual;
    }

    /// Moves up to `targetAmount` of receipt `id` from `confiscatee` to the
    /// caller.
    function confiscateReceipt(
        address confiscatee,
        uint256 id,
        uint256 targetAmount,
        bytes memory data
    ) external nonReentrant returns (uint256) {
        if (targetAmount == 0) revert ZeroConfiscateAmount();

        uint256 balance = sReceipt.balanceOf(confiscatee, id);
        uint256 actual = balance < targetAmount ? balance : targetAmount;
        if (actual > 0) {
            emit ConfiscateReceipt(
                msg.sender, confiscatee, id, targetAmount, actual, data
            );
            sReceipt.managerTransferFrom(
                msg.sender, confiscatee, msg.sender, id, actual, ""
            );
        }

        _authorize(
            msg.sender,
            CONFISCATE_RECEIPT,
            abi.encode(
                ConfiscateReceiptStateChange({
                    confiscatee: confiscatee,
                    id: id,
                    targetAmount: targetAmount,
                    actualAmount: actual,
                    data: data
                })
            )
        );
        return actual;
    }

    /// Freeze check, then TRANSFER_RECEIPT for the ERC-1155 operator (the
    /// vault's caller during manager operations).
    function authorizeReceiptTransfer3(
        address operator,
        address from,
        address to,
        uint256[] memory ids,
        uint256[] memory amounts
    ) public override {
        super.authorizeReceiptTransfer3(operator, from, to, ids, amounts);
        _checkOwnerFreeze(from, to);
        _authorize(
            operator,
            TRANSFER_RECEIPT,
            abi.encode(
                TransferReceiptStateChange({
                    from: from,
                    to: to,
                    ids: ids,
                    amounts: amounts,
                    isCertificationExpired: isCertificationExpired()
                })
            )
        );
    }

    function _nextId() internal view override returns (uint256) {
        return sHighwaterId + 1;
    }

    function _beforeDeposit(uint256 id) internal override {
        if (id > sHighwaterId) {
            sHighwaterId = id;
        }
    }

    /// The caller's DEPOSIT role is checked last, after both transfer hooks
    /// (Rain's order: an expired vault reports CertificationExpired first).
    function _afterDeposit(
        uint256 assets,
        address receiver,
        uint256 shares,
        uint256 id,
        bytes memory receiptInformation
    ) internal override {
        _authorize(
            msg.sender,
            DEPOSIT,
            abi.encode(
                DepositStateChange({
                    owner: msg.sender,
                    receiver: receiver,
                    id: id,
                    assetsDeposited: assets,
                    sharesMinted: shares,
                    data: receiptInformation
                })
            )
        );
    }

    function _afterWithdraw(
        uint256 assets,
        address receiver,
        address owner,
        uint256 shares,
        uint256 id,
        bytes memory receiptInformation
    ) internal override {
        _authorize(
            msg.sender,
            WITHDRAW,
            abi.encode(
                WithdrawStateChange({
                    owner: owner,
                    receiver: receiver,
                    id: id,
                    assetsWithdrawn: assets,
                    sharesBurned: shares,
                    data: receiptInformation
                })
            )
        );
    }

    function _beforeShareUpdate(address from, address to, uint256 amount)
        internal
        override
    {
        _checkOwnerFreeze(from, to);
        _authorize(
            msg.sender,
            TRANSFER_SHARES,
            abi.encode(
                TransferSharesStateChange({
                    from: from,
                    to: to,
                    amount: amount,
                    isCertificationExpired: isCertificationExpired()
                })
            )
        );
    }

    function _authorize(address user, bytes32 permission, bytes memory data)
        internal
    {
        sAuthorizer.authorize(user, permission, data);
    }
}
