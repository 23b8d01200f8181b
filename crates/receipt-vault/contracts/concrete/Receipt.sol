// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";
import {IERC1155Receiver} from "@openzeppelin/contracts/token/ERC1155/IERC1155Receiver.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";

import {ICloneableV2, ICLONEABLE_V2_SUCCESS} from "../interface/ICloneableV2.sol";
import {IReceiptManagerV2} from "../interface/IReceiptManagerV2.sol";
import {IReceiptV3} from "../interface/IReceiptV3.sol";
import {OnlyManager} from "../error/ErrReceiptVault.sol";

/// @title Receipt
/// The ERC-1155 receipt of one vault (its manager). Mirrors Rain's `Receipt`:
/// - only the manager mints, burns and force-transfers;
/// - during a manager call the "message sender" is the vault's caller, so
///   `TransferSingle.operator` names the account that called the vault;
/// - every balance change is first put to the manager
///   (`authorizeReceiptTransfer3`);
/// - OZ v4 revert strings for balance/approval failures.
contract Receipt is IReceiptV3, ICloneableV2, Initializable, ERC1155 {
    IReceiptManagerV2 internal sManager;
    /// Acting sender for the duration of a manager call; zero otherwise.
    address private sSender;

    constructor() ERC1155("") {
        _disableInitializers();
    }

    modifier onlyManager() {
        if (msg.sender != address(sManager)) revert OnlyManager();
        _;
    }

    modifier withSender(address sender) {
        sSender = sender;
        _;
        sSender = address(0);
    }

    /// `data` is `abi.encode(address manager)`.
    function initialize(bytes calldata data)
        external
        initializer
        returns (bytes32)
    {
        sManager = IReceiptManagerV2(abi.decode(data, (address)));
        return ICLONEABLE_V2_SUCCESS;
    }

    function manager() external view returns (address) {
        return address(sManager);
    }

    /// "<vault share symbol> Receipt".
    function name() external view returns (string memory) {
        return string.concat(_vaultShareSymbol(), " Receipt");
    }

    /// "<vault share symbol> RCPT".
    function symbol() external view returns (string memory) {
        return string.concat(_vaultShareSymbol(), " RCPT");
    }

    function managerMint(
        address sender,
        address account,
        uint256 id,
        uint256 amount,
        bytes memory data
    ) external onlyManager withSender(sender) {
        _receiptInformation(sender, id, data);
        _mint(account, id, amount, data);
    }

    function managerBurn(
        address sender,
        address account,
        uint256 id,
        uint256 amount,
        bytes memory data
    ) external onlyManager withSender(sender) {
        _receiptInformation(sender, id, data);
        _burn(account, id, amount);
    }

    function managerTransferFrom(
        address sender,
        address from,
        address to,
        uint256 id,
        uint256 amount,
        bytes memory data
    ) external onlyManager withSender(sender) {
        _safeTransferFrom(from, to, id, amount, data);
    }

    function receiptInformation(uint256 id, bytes memory data) external {
        _receiptInformation(_msgSender(), id, data);
    }

    // ---- ERC-1155 with OZ v4 revert strings. ----

    function balanceOf(address account, uint256 id)
        public
        view
        override(ERC1155, IERC1155)
        returns (uint256)
    {
        require(
            account != address(0),
            "ERC1155: address zero is not a valid owner"
        );
        return super.balanceOf(account, id);
    }

    function balanceOfBatch(address[] memory accounts, uint256[] memory ids)
        public
        view
        override(ERC1155, IERC1155)
        returns (uint256[] memory batchBalances)
    {
        require(
            accounts.length == ids.length,
            "ERC1155: accounts and ids length mismatch"
        );
        batchBalances = new uint256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; ++i) {
            batchBalances[i] = balanceOf(accounts[i], ids[i]);
        }
    }

    function setApprovalForAll(address operator, bool approved)
        public
        override(ERC1155, IERC1155)
    {
        require(
            _msgSender() != operator,
            "ERC1155: setting approval status for self"
        );
        super.setApprovalForAll(operator, approved);
    }

    function safeTransferFrom(
        address from,
        address to,
        uint256 id,
        uint256 value,
        bytes memory data
    ) public override(ERC1155, IERC1155) {
        _requireOwnerOrApproved(from);
        require(to != address(0), "ERC1155: transfer to the zero address");
        _safeTransferFrom(from, to, id, value, data);
    }

    function safeBatchTransferFrom(
        address from,
        address to,
        uint256[] memory ids,
        uint256[] memory values,
        bytes memory data
    ) public override(ERC1155, IERC1155) {
        _requireOwnerOrApproved(from);
        require(to != address(0), "ERC1155: transfer to the zero address");
        _safeBatchTransferFrom(from, to, ids, values, data);
    }

    // ---- Internals. ----

    function _msgSender() internal view override returns (address) {
        address sender = sSender;
        return sender == address(0) ? msg.sender : sender;
    }

    /// Manager veto first, then the v4 balance check, then the OZ update
    /// (which emits TransferSingle/TransferBatch with the acting operator).
    function _update(
        address from,
        address to,
        uint256[] memory ids,
        uint256[] memory values
    ) internal override {
        require(
            ids.length == values.length,
            "ERC1155: ids and amounts length mismatch"
        );
        sManager.authorizeReceiptTransfer3(_msgSender(), from, to, ids, values);
        if (from != address(0)) {
            for (uint256 i = 0; i < ids.length; ++i) {
                if (super.balanceOf(from, ids[i]) < values[i]) {
                    revert(
                        to == address(0)
                            ? "ERC1155: burn amount exceeds balance"
                            : "ERC1155: insufficient balance for transfer"
                    );
                }
            }
        }
        super._update(from, to, ids, values);
    }

    /// Balance update, then the receiver acceptance check with v4 strings.
    /// The acting sender is cleared before control passes to the receiver so
    /// a re-entrant call cannot act as the vault's caller.
    function _updateWithAcceptanceCheck(
        address from,
        address to,
        uint256[] memory ids,
        uint256[] memory values,
        bytes memory data,
        bool batch
    ) internal override {
        _update(from, to, ids, values);
        address operator = _msgSender();
        sSender = address(0);
        if (to == address(0) || to.code.length == 0) {
            return;
        }
        if (batch) {
            _checkBatchAcceptance(operator, from, to, ids, values, data);
        } else {
            _checkAcceptance(operator, from, to, ids[0], values[0], data);
        }
    }

    function _checkAcceptance(
        address operator,
        address from,
        address to,
        uint256 id,
        uint256 value,
        bytes memory data
    ) private {
        try IERC1155Receiver(to).onERC1155Received(
            operator, from, id, value, data
        ) returns (bytes4 response) {
            require(
                response == IERC1155Receiver.onERC1155Received.selector,
                "ERC1155: ERC1155Receiver rejected tokens"
            );
        } catch Error(string memory reason) {
            revert(reason);
        } catch {
            revert("ERC1155: transfer to non-ERC1155Receiver implementer");
        }
    }

    function _checkBatchAcceptance(
        address operator,
        address from,
        address to,
        uint256[] memory ids,
        uint256[] memory values,
        bytes memory data
    ) private {
        try IERC1155Receiver(to).onERC1155BatchReceived(
            operator, from, ids, values, data
        ) returns (bytes4 response) {
            require(
                response == IERC1155Receiver.onERC1155BatchReceived.selector,
                "ERC1155: ERC1155Receiver rejected tokens"
            );
        } catch Error(string memory reason) {
            revert(reason);
        } catch {
            revert("ERC1155: transfer to non-ERC1155Receiver implementer");
        }
    }

    function _requireOwnerOrApproved(address from) private view {
        address operator = _msgSender();
        require(
            from == operator || isApprovedForAll(from, operator),
            "ERC1155: caller is not token owner or approved"
        );
    }

    function _receiptInformation(address sender, uint256 id, bytes memory data)
        private
    {
        if (data.length > 0) {
            emit ReceiptInformation(sender, id, data);
        }
    }

    function _vaultShareSymbol() private view returns (string memory) {
        return IERC20Metadata(address(sManager)).symbol();
    }
}
