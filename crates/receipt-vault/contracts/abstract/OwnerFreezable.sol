// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

import {
    OwnerFrozen,
    OwnerFreezeAlwaysAllowedFromZero,
    OwnerFreezeAlwaysAllowedToZero,
    OwnerFreezeAlwaysAllowedFromProtected,
    OwnerFreezeAlwaysAllowedToProtected
} from "../error/ErrReceiptVault.sol";

/// @title OwnerFreezable
/// Single-owner access control plus an owner-controlled freeze of every token
/// movement, as in Rain's `OwnerFreezable`.
///
/// Ownership is implemented here rather than with OZ v5 `Ownable` so that the
/// revert reasons are the OZ v4 strings the real (OZ 4.9 based) vault raises,
/// and so that a clone can take its first owner during `initialize` without a
/// constructor argument.
abstract contract OwnerFreezable {
    event OwnershipTransferred(
        address indexed previousOwner, address indexed newOwner
    );
    /// Emitted on every `ownerFreezeUntil`, even when nothing changed.
    event OwnerFrozenUntil(
        address owner, uint256 targetTimestamp, uint256 actualTimestamp
    );
    event OwnerFreezeAlwaysAllowedFrom(
        address owner,
        address from,
        uint256 targetProtectedUntil,
        uint256 protectedUntil
    );
    event OwnerFreezeAlwaysAllowedTo(
        address owner,
        address to,
        uint256 targetProtectedUntil,
        uint256 protectedUntil
    );

    address private sOwner;
    uint256 private sOwnerFrozenUntil;
    /// Non-zero = `from` may always send during a freeze. The value only
    /// limits removal of the entry (Rain semantics), not the exemption.
    mapping(address => uint256) private sAlwaysAllowedFrom;
    mapping(address => uint256) private sAlwaysAllowedTo;

    modifier onlyOwner() {
        _checkOwner();
        _;
    }

    function owner() public view returns (address) {
        return sOwner;
    }

    function transferOwnership(address newOwner) external onlyOwner {
        require(newOwner != address(0), "Ownable: new owner is the zero address");
        _transferOwnership(newOwner);
    }

    function renounceOwnership() external onlyOwner {
        _transferOwnership(address(0));
    }

    function ownerFrozenUntil() external view returns (uint256) {
        return sOwnerFrozenUntil;
    }

    /// Extends the freeze; a lower timestamp is ignored, never an error.
    function ownerFreezeUntil(uint256 freezeUntil) external onlyOwner {
        if (freezeUntil > sOwnerFrozenUntil) {
            sOwnerFrozenUntil = freezeUntil;
        }
        emit OwnerFrozenUntil(msg.sender, freezeUntil, sOwnerFrozenUntil);
    }

    function ownerFreezeAlwaysAllowedFrom(address from)
        external
        view
        returns (uint256)
    {
        return sAlwaysAllowedFrom[from];
    }

    function ownerFreezeAlwaysAllowedTo(address to)
        external
        view
        returns (uint256)
    {
        return sAlwaysAllowedTo[to];
    }

    function ownerFreezeAlwaysAllowFrom(address from, uint256 protectUntil)
        external
        onlyOwner
    {
        if (protectUntil == 0) {
            revert OwnerFreezeAlwaysAllowedFromZero(from);
        }
        if (protectUntil > sAlwaysAllowedFrom[from]) {
            sAlwaysAllowedFrom[from] = protectUntil;
        }
        emit OwnerFreezeAlwaysAllowedFrom(
            msg.sender, from, protectUntil, sAlwaysAllowedFrom[from]
        );
    }

    function ownerFreezeAlwaysAllowTo(address to, uint256 protectUntil)
        external
        onlyOwner
    {
        if (protectUntil == 0) {
            revert OwnerFreezeAlwaysAllowedToZero(to);
        }
        if (protectUntil > sAlwaysAllowedTo[to]) {
            sAlwaysAllowedTo[to] = protectUntil;
        }
        emit OwnerFreezeAlwaysAllowedTo(
            msg.sender, to, protectUntil, sAlwaysAllowedTo[to]
        );
    }

    function ownerFreezeStopAlwaysAllowingFrom(address from)
        external
        onlyOwner
    {
        uint256 protectedUntil = sAlwaysAllowedFrom[from];
        if (block.timestamp < protectedUntil) {
            revert OwnerFreezeAlwaysAllowedFromProtected(from, protectedUntil);
        }
        delete sAlwaysAllowedFrom[from];
        emit OwnerFreezeAlwaysAllowedFrom(msg.sender, from, 0, 0);
    }

    function ownerFreezeStopAlwaysAllowingTo(address to) external onlyOwner {
        uint256 protectedUntil = sAlwaysAllowedTo[to];
        if (block.timestamp < protectedUntil) {
            revert OwnerFreezeAlwaysAllowedToProtected(to, protectedUntil);
        }
        delete sAlwaysAllowedTo[to];
        emit OwnerFreezeAlwaysAllowedTo(msg.sender, to, 0, 0);
    }

    /// Reverts if a movement `from` -> `to` is blocked by the freeze. Runs
    /// before the authorizer, as in Rain.
    function _checkOwnerFreeze(address from, address to) internal view {
        uint256 frozenUntil = sOwnerFrozenUntil;
        if (
            block.timestamp < frozenUntil && sAlwaysAllowedFrom[from] == 0
                && sAlwaysAllowedTo[to] == 0
        ) {
            revert OwnerFrozen(frozenUntil, from, to);
        }
    }

    function _checkOwner() internal view {
        require(msg.sender == sOwner, "Ownable: caller is not the owner");
    }

    function _transferOwnership(address newOwner) internal {
        address previous = sOwner;
        sOwner = newOwner;
        emit OwnershipTransferred(previous, newOwner);
    }
}
