// SPDX-License-Identifier: MIT
pragma solidity =0.8.30;

// Errors raised by the vault family. Names and argument types must match
// Rain's exactly: callers decode them by selector.

error ZeroAssetsAmount();
error ZeroSharesAmount();
error ZeroReceiver();
error ZeroOwner();
error InvalidId(uint256 id);
error MinShareRatio(uint256 minShareRatio, uint256 shareRatio);
error WrongManager(address expectedManager, address actualManager);
error NonZeroAsset();
error ZeroInitialAdmin();
error IncompatibleAuthorizer();
error ZeroCertifyUntil();
error ZeroConfiscateAmount();
error CertificationExpired(address from, address to);

// Receipt.
error OnlyManager();

// Owner freeze.
error OwnerFrozen(uint256 freezeUntil, address from, address to);
error OwnerFreezeAlwaysAllowedFromZero(address from);
error OwnerFreezeAlwaysAllowedToZero(address to);
error OwnerFreezeAlwaysAllowedFromProtected(address from, uint256 protectedUntil);
error OwnerFreezeAlwaysAllowedToProtected(address to, uint256 protectedUntil);

// Clone factory.
error ZeroImplementationCodeSize();
error InitializationFailed();
