// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import "@account-abstraction/contracts-v08/interfaces/PackedUserOperation.sol";

/// An ERC-4337 account for the bundler's tests: the first signature byte picks what
/// validateUserOp does, so every validation outcome can be provoked through the real RPC.
///   0x00                          accept
///   0x01 <utf8 reason>            revert with that reason
///   0x02                          signature failure (SIG_VALIDATION_FAILED)
///   0x03 <uint48 after><uint48 until>  accept within that time range
/// Same struct for EntryPoint v0.7 and v0.8, so one contract serves both.
contract TestAccount {
    address public immutable entryPoint;

    event Executed(address target, uint256 value, bytes data);

    constructor(address _entryPoint) {
        entryPoint = _entryPoint;
    }

    receive() external payable {}

    function validateUserOp(PackedUserOperation calldata userOp, bytes32, uint256 missingAccountFunds)
        external
        returns (uint256 validationData)
    {
        require(msg.sender == entryPoint, "TestAccount: not from EntryPoint");
        bytes calldata sig = userOp.signature;
        uint8 mode = sig.length == 0 ? 0 : uint8(sig[0]);
        if (mode == 1) {
            revert(string(sig[1:]));
        } else if (mode == 2) {
            validationData = 1;
        } else if (mode == 3) {
            uint48 validAfter = uint48(bytes6(sig[1:7]));
            uint48 validUntil = uint48(bytes6(sig[7:13]));
            validationData = (uint256(validAfter) << 208) | (uint256(validUntil) << 160);
        }
        if (missingAccountFunds > 0) {
            (bool ok,) = payable(msg.sender).call{value: missingAccountFunds}("");
            (ok);
        }
    }

    function execute(address target, uint256 value, bytes calldata data) external {
        require(msg.sender == entryPoint, "TestAccount: not from EntryPoint");
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        emit Executed(target, value, data);
    }

    function fail(string calldata reason) external pure {
        revert(reason);
    }
}

/// A paymaster for the bundler's tests: the first paymasterData byte picks the outcome.
///   0x00 accept; 0x01 <reason> revert; 0x03 <after><until> accept within that range
contract TestPaymaster {
    address public immutable entryPoint;

    constructor(address _entryPoint) {
        entryPoint = _entryPoint;
    }

    function validatePaymasterUserOp(PackedUserOperation calldata userOp, bytes32, uint256)
        external
        view
        returns (bytes memory context, uint256 validationData)
    {
        require(msg.sender == entryPoint, "TestPaymaster: not from EntryPoint");
        // paymasterAndData = paymaster(20) | verificationGas(16) | postOpGas(16) | paymasterData
        bytes calldata data = userOp.paymasterAndData[52:];
        uint8 mode = data.length == 0 ? 0 : uint8(data[0]);
        if (mode == 1) {
            revert(string(data[1:]));
        } else if (mode == 3) {
            uint48 validAfter = uint48(bytes6(data[1:7]));
            uint48 validUntil = uint48(bytes6(data[7:13]));
            validationData = (uint256(validAfter) << 208) | (uint256(validUntil) << 160);
        }
        context = "";
    }

    function postOp(uint8, bytes calldata, uint256, uint256) external {}

    function deposit() external payable {
        (bool ok,) = entryPoint.call{value: msg.value}(abi.encodeWithSignature("depositTo(address)", address(this)));
        require(ok, "deposit failed");
    }
}
