// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";

/// The ERC-1155 receipt minted and burned 1:1 with vault shares.
interface IReceiptV3 is IERC1155 {
    /// Free-form information attached to receipt `id` by `sender`.
    event ReceiptInformation(address sender, uint256 id, bytes information);

    function manager() external view returns (address);

    function name() external view returns (string memory);

    function symbol() external view returns (string memory);

    function managerMint(
        address sender,
        address account,
        uint256 id,
        uint256 amount,
        bytes memory data
    ) external;

    function managerBurn(
        address sender,
        address account,
        uint256 id,
        uint256 amount,
        bytes memory data
    ) external;

    function managerTransferFrom(
        address sender,
        address from,
        address to,
        uint256 id,
        uint256 amount,
        bytes memory data
    ) external;

    function receiptInformation(uint256 id, bytes memory data) external;
}
