// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";

import {
    ICloneableV2,
    ICloneableFactoryV2,
    ICLONEABLE_V2_SUCCESS
} from "../interface/ICloneableV2.sol";
import {
    InitializationFailed,
    ZeroImplementationCodeSize
} from "../error/ErrReceiptVault.sol";

/// @title CloneFactory
/// EIP-1167 clone factory with Rain's rain.factory interface.
contract CloneFactory is ICloneableFactoryV2 {
    /// `NewClone` is emitted before `initialize`, so when a vault clones its
    /// own receipt during initialization the vault's event comes first.
    function clone(address implementation, bytes calldata data)
        external
        returns (address)
    {
        if (implementation.code.length == 0) {
            revert ZeroImplementationCodeSize();
        }
        address cloned = Clones.clone(implementation);
        emit NewClone(msg.sender, implementation, cloned);
        if (ICloneableV2(cloned).initialize(data) != ICLONEABLE_V2_SUCCESS) {
            revert InitializationFailed();
        }
        return cloned;
    }
}
