// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

/// Thrown when anything but the managed receipt asks the manager to
/// authorize a receipt transfer.
error UnmanagedReceiptTransfer();

/// The manager (vault) of a receipt. Interface id 0xe5be7d90.
interface IReceiptManagerV2 {
    /// Called by the receipt before every balance change; reverts to veto.
    function authorizeReceiptTransfer3(
        address operator,
        address from,
        address to,
        uint256[] memory ids,
        uint256[] memory amounts
    ) external;
}
