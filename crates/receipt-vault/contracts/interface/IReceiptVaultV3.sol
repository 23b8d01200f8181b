// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

import {IReceiptV3} from "./IReceiptV3.sol";

/// Rain's receipt vault. Only `receipt()` contributes to the interface id
/// (0xe1e6b898); the events are declared here so every vault shares them.
interface IReceiptVaultV3 {
    /// Rain's deposit event: no indexed fields, carries the receipt id and
    /// the receipt information (NOT the ERC-4626 `Deposit`). `owner` is the
    /// receiver of both shares and receipt.
    event Deposit(
        address sender,
        address owner,
        uint256 assets,
        uint256 shares,
        uint256 id,
        bytes receiptInformation
    );

    /// Rain's withdraw event: no indexed fields. `owner` is the account whose
    /// shares and receipt were burned; `receiver` is informational only.
    event Withdraw(
        address sender,
        address receiver,
        address owner,
        uint256 assets,
        uint256 shares,
        uint256 id,
        bytes receiptInformation
    );

    /// Free-form information about the vault, emitted by anyone.
    event ReceiptVaultInformation(address sender, bytes vaultInformation);

    function receipt() external view returns (IReceiptV3);
}
