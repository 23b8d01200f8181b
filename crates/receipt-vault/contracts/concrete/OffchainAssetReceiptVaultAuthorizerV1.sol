// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";

import {ICloneableV2, ICLONEABLE_V2_SUCCESS} from "../interface/ICloneableV2.sol";
import {IAuthorizeV1, Unauthorized} from "../interface/IAuthorizeV1.sol";
import {CertificationExpired, ZeroInitialAdmin} from "../error/ErrReceiptVault.sol";
import {
    CERTIFY,
    CONFISCATE_RECEIPT,
    CONFISCATE_SHARES,
    DEPOSIT,
    WITHDRAW,
    TRANSFER_RECEIPT,
    TRANSFER_SHARES,
    TransferReceiptStateChange,
    TransferSharesStateChange
} from "./OffchainAssetReceiptVault.sol";

bytes32 constant CERTIFY_ADMIN = keccak256("CERTIFY_ADMIN");
bytes32 constant CONFISCATE_SHARES_ADMIN = keccak256("CONFISCATE_SHARES_ADMIN");
bytes32 constant CONFISCATE_RECEIPT_ADMIN = keccak256("CONFISCATE_RECEIPT_ADMIN");
bytes32 constant DEPOSIT_ADMIN = keccak256("DEPOSIT_ADMIN");
bytes32 constant WITHDRAW_ADMIN = keccak256("WITHDRAW_ADMIN");

/// `initialize(bytes)` payload of the authorizer.
struct OffchainAssetReceiptVaultAuthorizerV1Config {
    address initialAdmin;
}

/// @title OffchainAssetReceiptVaultAuthorizerV1
/// Role-based policy for `OffchainAssetReceiptVault`, as Rain's:
/// - each role X is administered by X_ADMIN, which administers itself; the
///   initial admin gets only the five *_ADMIN roles (DEFAULT_ADMIN_ROLE is
///   held by nobody);
/// - share/receipt movements pass while certified; while expired only mints
///   to DEPOSIT holders, burns from WITHDRAW holders and confiscations pass;
/// - any other permission is a role check on `user`.
contract OffchainAssetReceiptVaultAuthorizerV1 is
    ICloneableV2,
    IAuthorizeV1,
    Initializable,
    AccessControl
{
    constructor() {
        _disableInitializers();
    }

    /// `data` is `abi.encode(OffchainAssetReceiptVaultAuthorizerV1Config)`.
    function initialize(bytes calldata data)
        external
        initializer
        returns (bytes32)
    {
        OffchainAssetReceiptVaultAuthorizerV1Config memory config =
            abi.decode(data, (OffchainAssetReceiptVaultAuthorizerV1Config));
        address admin = config.initialAdmin;
        if (admin == address(0)) revert ZeroInitialAdmin();

        _setupRole(CERTIFY, CERTIFY_ADMIN, admin);
        _setupRole(CONFISCATE_SHARES, CONFISCATE_SHARES_ADMIN, admin);
        _setupRole(CONFISCATE_RECEIPT, CONFISCATE_RECEIPT_ADMIN, admin);
        _setupRole(DEPOSIT, DEPOSIT_ADMIN, admin);
        _setupRole(WITHDRAW, WITHDRAW_ADMIN, admin);

        return ICLONEABLE_V2_SUCCESS;
    }

    function supportsInterface(bytes4 interfaceId)
        public
        view
        override
        returns (bool)
    {
        return interfaceId == type(IAuthorizeV1).interfaceId
            || interfaceId == type(ICloneableV2).interfaceId
            || super.supportsInterface(interfaceId);
    }

    /// Not `view` in Rain's ABI, although it changes no state.
    function authorize(address user, bytes32 permission, bytes memory data)
        external
        override
    {
        if (permission == TRANSFER_SHARES) {
            TransferSharesStateChange memory change =
                abi.decode(data, (TransferSharesStateChange));
            _checkTransfer(
                user,
                change.from,
                change.to,
                change.isCertificationExpired,
                CONFISCATE_SHARES
            );
        } else if (permission == TRANSFER_RECEIPT) {
            TransferReceiptStateChange memory change =
                abi.decode(data, (TransferReceiptStateChange));
            _checkTransfer(
                user,
                change.from,
                change.to,
                change.isCertificationExpired,
                CONFISCATE_RECEIPT
            );
        } else if (!hasRole(permission, user)) {
            revert Unauthorized(user, permission, data);
        }
    }

    /// v4 semantics: only the caller may renounce their own role.
    function renounceRole(bytes32 role, address account) public override {
        require(
            account == _msgSender(),
            "AccessControl: can only renounce roles for self"
        );
        super.renounceRole(role, account);
    }

    /// OZ v4 revert string instead of `AccessControlUnauthorizedAccount`.
    function _checkRole(bytes32 role, address account)
        internal
        view
        override
    {
        if (!hasRole(role, account)) {
            revert(
                string.concat(
                    "AccessControl: account ",
                    Strings.toHexString(account),
                    " is missing role ",
                    Strings.toHexString(uint256(role), 32)
                )
            );
        }
    }

    function _setupRole(bytes32 role, bytes32 adminRole, address admin)
        private
    {
        _setRoleAdmin(role, adminRole);
        _setRoleAdmin(adminRole, adminRole);
        _grantRole(adminRole, admin);
    }

    function _checkTransfer(
        address user,
        address from,
        address to,
        bool isCertificationExpired,
        bytes32 confiscateRole
    ) private view {
        if (!isCertificationExpired) return;
        // Mint to a DEPOSIT holder (the receiver's role counts).
        if (from == address(0) && hasRole(DEPOSIT, to)) return;
        // Burn from a WITHDRAW holder (the owner's role counts).
        if (to == address(0) && hasRole(WITHDRAW, from)) return;
        if (hasRole(confiscateRole, user)) return;
        revert CertificationExpired(from, to);
    }
}
