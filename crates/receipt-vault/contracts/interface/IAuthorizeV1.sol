// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

/// Thrown when `user` lacks `permission`. `data` is the ABI-encoded state
/// change that was being authorized.
error Unauthorized(address user, bytes32 permission, bytes data);

/// Pluggable policy consulted by the vault for every privileged action and
/// every share/receipt movement. Interface id 0x59f89dda.
interface IAuthorizeV1 {
    /// Reverts if `user` may not perform `permission`; returns otherwise.
    function authorize(address user, bytes32 permission, bytes memory data)
        external;
}
