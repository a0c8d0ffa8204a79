// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SessionAccount} from "./SessionAccount.sol";

/// Creation code of a SessionAccount clone: initialises the clone's storage (owner) through a
/// DELEGATECALL to the implementation while its code is still empty, then installs the
/// ERC-1167 minimal proxy runtime
///     363d3d373d3d3d363d73 <implementation> 5af43d82803e903d91602b57fd5bf3   (45 bytes)
/// so every account of one implementation has the same, recognisable code.
contract SessionAccountProxy {
    constructor(address implementation, address owner) payable {
        (bool ok, bytes memory ret) = implementation.delegatecall(abi.encodeCall(SessionAccount.initialize, (owner)));
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
        bytes memory runtime =
            abi.encodePacked(hex"363d3d373d3d3d363d73", implementation, hex"5af43d82803e903d91602b57fd5bf3");
        assembly ("memory-safe") {
            return(add(runtime, 32), mload(runtime))
        }
    }
}

/// CREATE2 factory of SessionAccount clones: the address depends on (implementation, owner, salt).
/// ERC-7562-clean: no storage of its own, one CREATE2, reads only the new account's code size.
contract SessionAccountFactory {
    address public immutable ACCOUNT_IMPLEMENTATION;

    error ImplementationHasNoCode(address implementation);

    constructor(address implementation) {
        // a clone of a code-less implementation would initialise nothing and be unusable
        if (implementation.code.length == 0) revert ImplementationHasNoCode(implementation);
        ACCOUNT_IMPLEMENTATION = implementation;
    }

    /// Deploys the account unless it exists; returns its address either way (ERC-4337 initCode).
    function createAccount(address owner, uint256 salt) external returns (address account) {
        account = getAddress(owner, salt);
        if (account.code.length != 0) return account;
        new SessionAccountProxy{salt: bytes32(salt)}(ACCOUNT_IMPLEMENTATION, owner);
    }

    function getAddress(address owner, uint256 salt) public view returns (address) {
        bytes32 initCodeHash = keccak256(
            abi.encodePacked(type(SessionAccountProxy).creationCode, abi.encode(ACCOUNT_IMPLEMENTATION, owner))
        );
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), bytes32(salt), initCodeHash)))));
    }
}
