// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import "@account-abstraction/contracts-v08/interfaces/PackedUserOperation.sol";

/// The EntryPoint's staking and deposit functions (same in v0.7 and v0.8).
interface IRulesStakeManager {
    function addStake(uint32 unstakeDelaySec) external payable;
    function depositTo(address account) external payable;
    function balanceOf(address account) external view returns (uint256);
}

contract RulesDummy {}

/// What the ERC-7562 tests make an entity do during validation, chosen by data:
///   payload = how (1 byte) | target (20 bytes) | command (ASCII)
///   how: 0 run the command here, 1 CALL target.run(...), 2 DELEGATECALL target.run(...)
///   target: a helper contract (another RulesEntity) the command may use
/// An account takes the payload from userOp.signature, a paymaster from paymasterData, the
/// factory from createAccount's argument. An empty payload does nothing (the op is clean).
abstract contract RulesBase {
    event Used(uint256 value);

    uint256 public plain; // slot 0: associated with nobody
    mapping(address => uint256) public balances; // keyed by address: associated with the key

    receive() external payable {}

    function setPlain(uint256 v) external {
        plain = v;
    }

    function setBalance(address who, uint256 v) external {
        balances[who] = v;
    }

    function touchTransient() external {
        assembly {
            tstore(0, 1)
        }
    }

    function addStake(address entryPoint, uint32 unstakeDelaySec) external payable {
        IRulesStakeManager(entryPoint).addStake{value: msg.value}(unstakeDelaySec);
    }

    function deposit(address entryPoint) external payable {
        IRulesStakeManager(entryPoint).depositTo{value: msg.value}(address(this));
    }

    function burn() external pure returns (bytes32 h) {
        while (true) {
            h = keccak256(abi.encode(h));
        }
    }

    function invalidOp() external pure {
        assembly {
            invalid()
        }
    }

    function fail() external pure {
        revert("inner revert");
    }

    function _behave(bytes calldata payload, address sender, address entryPoint) internal {
        if (payload.length < 21) return;
        uint8 how = uint8(payload[0]);
        address target = address(bytes20(payload[1:21]));
        string memory cmd = string(payload[21:]);
        if (how == 1) {
            (bool ok,) = target.call(abi.encodeCall(this.run, (target, cmd, sender, entryPoint)));
            (ok);
        } else if (how == 2) {
            (bool ok,) = target.delegatecall(abi.encodeCall(this.run, (target, cmd, sender, entryPoint)));
            (ok);
        } else {
            run(target, cmd, sender, entryPoint);
        }
    }

    function _is(string memory cmd, string memory name) private pure returns (bool) {
        return keccak256(bytes(cmd)) == keccak256(bytes(name));
    }

    function run(address target, string memory cmd, address sender, address entryPoint) public {
        RulesBase helper = RulesBase(payable(target));
        address noCode = address(uint160(uint256(keccak256("ERC-7562 test: no code here"))));
        // OP-011 / OP-080: environment opcodes
        if (_is(cmd, "TIMESTAMP")) emit Used(block.timestamp);
        else if (_is(cmd, "NUMBER")) emit Used(block.number);
        else if (_is(cmd, "GASPRICE")) emit Used(tx.gasprice);
        else if (_is(cmd, "BASEFEE")) emit Used(block.basefee);
        else if (_is(cmd, "ORIGIN")) emit Used(uint160(tx.origin));
        else if (_is(cmd, "COINBASE")) emit Used(uint160(address(block.coinbase)));
        else if (_is(cmd, "GASLIMIT")) emit Used(block.gaslimit);
        else if (_is(cmd, "PREVRANDAO")) emit Used(block.prevrandao);
        else if (_is(cmd, "BLOCKHASH")) emit Used(uint256(blockhash(0)));
        else if (_is(cmd, "BLOBHASH")) emit Used(uint256(blobhash(0)));
        else if (_is(cmd, "BLOBBASEFEE")) emit Used(block.blobbasefee);
        else if (_is(cmd, "SELFDESTRUCT")) selfdestruct(payable(target));
        else if (_is(cmd, "BALANCE")) emit Used(target.balance);
        else if (_is(cmd, "SELFBALANCE")) emit Used(address(this).balance);
        // OP-012: GAS only right before a *CALL
        else if (_is(cmd, "GAS")) emit Used(gasleft());
        else if (_is(cmd, "GAS_CALL")) {
            assembly {
                pop(call(gas(), target, 0, 0, 0, 0, 0))
            }
        }
        // OP-011 INVALID, OP-020 out of gas (in an inner frame whose failure is ignored)
        else if (_is(cmd, "INVALID")) {
            (bool ok,) = address(this).call{gas: 20_000}(abi.encodeCall(this.invalidOp, ()));
            (ok);
        } else if (_is(cmd, "OOG")) {
            (bool ok,) = address(this).call{gas: 20_000}(abi.encodeCall(this.burn, ()));
            (ok);
        } else if (_is(cmd, "REVERT_INNER")) {
            (bool ok,) = address(this).call(abi.encodeCall(this.fail, ()));
            (ok);
        }
        // OP-031 / OP-032
        else if (_is(cmd, "CREATE")) new RulesDummy();
        else if (_is(cmd, "CREATE2")) new RulesDummy{salt: bytes32(0)}();
        // OP-041: addresses without code
        else if (_is(cmd, "EXTCODESIZE_NOCODE")) emit Used(noCode.code.length);
        else if (_is(cmd, "CALL_NOCODE")) {
            (bool ok,) = noCode.call("");
            (ok);
        } else if (_is(cmd, "EXTCODESIZE_TARGET")) emit Used(target.code.length);
        // OP-051..054: the EntryPoint
        else if (_is(cmd, "EP_BALANCEOF")) emit Used(IRulesStakeManager(entryPoint).balanceOf(address(this)));
        else if (_is(cmd, "EP_DEPOSIT")) IRulesStakeManager(entryPoint).depositTo{value: 0}(sender);
        else if (_is(cmd, "EP_CODEHASH")) emit Used(uint256(entryPoint.codehash));
        else if (_is(cmd, "EP_FALLBACK")) {
            // a plain value transfer to the EntryPoint (its receive() deposits for the caller)
            (bool ok,) = payable(entryPoint).call{value: 1}("");
            (ok);
        }
        // EREP-050: validatePaymasterUserOp returns a context (the command itself does nothing)
        else if (_is(cmd, "CONTEXT")) {}
        // OP-061 / OP-062
        else if (_is(cmd, "VALUE_CALL")) {
            (bool ok,) = payable(target).call{value: 1}("");
            (ok);
        } else if (_is(cmd, "PRECOMPILE_BAD")) {
            (bool ok,) = address(0x0b).staticcall(new bytes(256));
            (ok);
        } else if (_is(cmd, "PRECOMPILE_OK")) emit Used(uint160(ecrecover(bytes32(0), 27, bytes32(uint256(1)), bytes32(uint256(1)))));
        // storage (STO-*) and transient storage (OP-070)
        else if (_is(cmd, "SLOAD_OWN")) emit Used(plain);
        else if (_is(cmd, "SSTORE_OWN")) plain += 1;
        else if (_is(cmd, "TLOAD_OWN")) {
            uint256 v;
            assembly {
                v := tload(0)
            }
            emit Used(v);
        } else if (_is(cmd, "TSTORE_OWN")) {
            assembly {
                tstore(0, 1)
            }
        } else if (_is(cmd, "SLOAD_EXT")) emit Used(helper.plain());
        else if (_is(cmd, "SSTORE_EXT")) helper.setPlain(1);
        else if (_is(cmd, "TSTORE_EXT")) helper.touchTransient();
        else if (_is(cmd, "READ_SENDER_ASSOC")) emit Used(helper.balances(sender));
        else if (_is(cmd, "WRITE_SENDER_ASSOC")) helper.setBalance(sender, 1);
        else if (_is(cmd, "WRITE_SELF_ASSOC")) helper.setBalance(address(this), 1);
        // a rule broken only once the helper says so (for the second validation)
        else if (_is(cmd, "TIMESTAMP_IF_FLAGGED")) {
            if (helper.balances(sender) != 0) emit Used(block.timestamp);
        } else if (bytes(cmd).length != 0) revert(string.concat("RulesEntity: unknown command ", cmd));
    }
}

/// Account and paymaster (one contract, both roles), for EntryPoint v0.7 and v0.8.
contract RulesEntity is RulesBase {
    function validateUserOp(PackedUserOperation calldata userOp, bytes32, uint256 missingAccountFunds)
        external
        returns (uint256)
    {
        _behave(userOp.signature, userOp.sender, msg.sender);
        if (missingAccountFunds > 0) {
            (bool ok,) = payable(msg.sender).call{value: missingAccountFunds}("");
            (ok);
        }
        return 0;
    }

    function validatePaymasterUserOp(PackedUserOperation calldata userOp, bytes32, uint256)
        external
        returns (bytes memory context, uint256 validationData)
    {
        bytes calldata payload = userOp.paymasterAndData[52:];
        _behave(payload, userOp.sender, msg.sender);
        if (payload.length > 21 && keccak256(payload[21:]) == keccak256("CONTEXT")) return ("a context", 0);
        return ("", 0);
    }

    function postOp(uint8, bytes calldata, uint256, uint256) external {}
}

/// Factory of RulesEntity accounts (CREATE2, salt = the given number).
contract RulesFactory is RulesBase {
    address public immutable entryPoint;

    constructor(address _entryPoint) {
        entryPoint = _entryPoint;
    }

    function createAccount(uint256 salt, bytes calldata payload) external returns (address account) {
        account = getAddress(salt);
        _behave(payload, account, entryPoint);
        if (account.code.length == 0) {
            new RulesEntity{salt: bytes32(salt)}();
        }
    }

    function getAddress(uint256 salt) public view returns (address) {
        bytes32 h = keccak256(
            abi.encodePacked(bytes1(0xff), address(this), bytes32(salt), keccak256(type(RulesEntity).creationCode))
        );
        return address(uint160(uint256(h)));
    }
}

/// An account whose constructor runs a command (payload as above) while its factory deploys it,
/// e.g. EP_FALLBACK: it pre-funds its EntryPoint deposit from its own balance (OP-053 in the
/// factory phase).
contract RulesSelfFundedEntity is RulesEntity {
    constructor(address entryPoint, bytes memory payload) {
        if (payload.length < 21) return;
        uint8 how = uint8(payload[0]);
        address target;
        assembly {
            target := shr(96, mload(add(payload, 33)))
        }
        bytes memory cmd = new bytes(payload.length - 21);
        for (uint256 i = 0; i < cmd.length; i++) {
            cmd[i] = payload[21 + i];
        }
        bytes memory call = abi.encodeWithSelector(RulesBase.run.selector, target, string(cmd), address(this), entryPoint);
        if (how == 1) {
            (bool ok,) = target.call(call);
            (ok);
        } else if (how == 2) {
            (bool ok,) = target.delegatecall(call);
            (ok);
        } else {
            run(target, string(cmd), address(this), entryPoint);
        }
    }
}

/// Factory of RulesSelfFundedEntity accounts (CREATE2; the address depends on the payload).
contract RulesSelfFundingFactory is RulesBase {
    address public immutable entryPoint;

    constructor(address _entryPoint) {
        entryPoint = _entryPoint;
    }

    function createAccount(uint256 salt, bytes calldata payload) external returns (address account) {
        account = getAddress(salt, payload);
        if (account.code.length == 0) {
            new RulesSelfFundedEntity{salt: bytes32(salt)}(entryPoint, payload);
        }
    }

    function getAddress(uint256 salt, bytes calldata payload) public view returns (address) {
        bytes memory init = abi.encodePacked(type(RulesSelfFundedEntity).creationCode, abi.encode(entryPoint, payload));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), bytes32(salt), keccak256(init))))));
    }
}
