// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

// Value a clone's `initialize` returns on success; the factory rejects any
// other value (Rain's rain.factory convention).
bytes32 constant ICLONEABLE_V2_SUCCESS = keccak256("ICloneableV2.initialize");

/// A contract that is deployed as an EIP-1167 clone and initialized exactly
/// once by a factory. Interface id 0x439fab91.
interface ICloneableV2 {
    function initialize(bytes calldata data) external returns (bytes32 success);
}

/// Factory that clones an implementation and initializes the clone.
interface ICloneableFactoryV2 {
    event NewClone(address sender, address implementation, address clone);

    function clone(address implementation, bytes calldata data)
        external
        returns (address);
}
