// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

// Types of the session-key account and their EIP-712 hashing. The Python mirror is
// src/bundler/sessions/abi.py; keep both in step (a differential test compares them).

// Limit.kind
uint8 constant LIMIT_NONE = 0; // no cumulative limit
uint8 constant LIMIT_LIFETIME = 1; // `amount` over the whole life of the session
uint8 constant LIMIT_ALLOWANCE = 2; // `amount` per period of SessionSpec.period seconds (refills)

// ArgConstraint.condition: `word <cond> refValue`, both compared as uint256 (eq/neq bitwise)
uint8 constant COND_EQ = 0;
uint8 constant COND_NEQ = 1;
uint8 constant COND_GT = 2;
uint8 constant COND_GTE = 3;
uint8 constant COND_LT = 4;
uint8 constant COND_LTE = 5;

// Scope of a cumulative limit (errors, SessionUsed, remaining())
uint8 constant SCOPE_CALL_VALUE = 0; // CallPolicy.valueLimit
uint8 constant SCOPE_CALL_ARG = 1; // CallPolicy.constraints[i].limit
uint8 constant SCOPE_TRANSFER_VALUE = 2; // TransferPolicy.valueLimit
uint8 constant SCOPE_GAS = 3; // GasPolicy.costLimit (policyIndex = constraintIndex = 0)

// ArgConstraint.argType: how the callee reads the word; a word that is not the canonical ABI
// encoding of that type is refused (SessionArgNotCanonical) before the condition is checked.
uint8 constant ARG_WORD = 0; // uint256 / bytes32: any word (argSize 0)
uint8 constant ARG_ADDRESS = 1; // upper 12 bytes zero (argSize 0)
uint8 constant ARG_BOOL = 2; // 0 or 1 (argSize 0)
uint8 constant ARG_UINT = 3; // uint(8*argSize): upper 32-argSize bytes zero (argSize 1..32)
uint8 constant ARG_INT = 4; // int(8*argSize): sign-extended from argSize bytes; conditions compare signed
uint8 constant ARG_BYTES = 5; // bytes<argSize>: lower 32-argSize bytes zero (argSize 1..32)

struct Limit {
    uint8 kind; // LIMIT_*
    uint256 amount;
}

struct ArgConstraint {
    uint8 condition; // COND_*
    uint8 argType; // ARG_*
    uint8 argSize; // bytes of an ARG_UINT / ARG_INT / ARG_BYTES type (1..32), else 0
    uint32 index; // ABI word index after the selector: bytes [4 + 32*index, 4 + 32*index + 32)
    bytes32 refValue;
    Limit limit; // cumulative limit on uint256(word) (e.g. an ERC-20 amount)
}

struct CallPolicy {
    address target; // address(0) = any target
    bytes4 selector; // 0x00000000 = any selector
    uint256 maxValuePerUse; // wei per call; 0 = no ETH may be sent
    Limit valueLimit; // cumulative wei
    ArgConstraint[] constraints;
}

struct TransferPolicy {
    address target; // address(0) = any recipient
    uint256 maxValuePerUse;
    Limit valueLimit;
}

/// What the session may make the account spend on gas. An op's maximum cost is
/// (preVerificationGas + verificationGasLimit + callGasLimit + paymasterVerificationGasLimit +
/// paymasterPostOpGasLimit) * maxFeePerGas, the prefund the EntryPoint may take (saturating).
struct GasPolicy {
    uint256 maxCostPerOp; // every op's maximum cost must be <= this (paymaster ops included)
    Limit costLimit; // cumulative maximum cost of the ops the account pays for (no paymaster)
    address[] paymasters; // the paymasters the session may use; empty = none
}

struct SessionSpec {
    address signer; // session key; also the session's id
    uint48 validAfter;
    uint48 validUntil; // 0 = no expiry
    uint48 period; // allowance period in seconds (0 = no allowances); periods start at validAfter
    bool wildcard; // any call/transfer (never to the account itself); window + usageLimit still apply
    uint32 usageLimit; // max number of UserOperations (0 = unlimited)
    CallPolicy[] callPolicies;
    TransferPolicy[] transferPolicies;
    GasPolicy gas;
}

struct Call {
    address target;
    uint256 value;
    bytes data;
}

/// EIP-712 struct hashes of SessionSpec and of the enable message.
library SessionSpecHash {
    bytes32 internal constant LIMIT_TYPEHASH = keccak256("Limit(uint8 kind,uint256 amount)");
    bytes32 internal constant ARG_CONSTRAINT_TYPEHASH = keccak256(
        "ArgConstraint(uint8 condition,uint8 argType,uint8 argSize,uint32 index,bytes32 refValue,Limit limit)Limit(uint8 kind,uint256 amount)"
    );
    bytes32 internal constant CALL_POLICY_TYPEHASH = keccak256(
        "CallPolicy(address target,bytes4 selector,uint256 maxValuePerUse,Limit valueLimit,ArgConstraint[] constraints)"
        "ArgConstraint(uint8 condition,uint8 argType,uint8 argSize,uint32 index,bytes32 refValue,Limit limit)Limit(uint8 kind,uint256 amount)"
    );
    bytes32 internal constant GAS_POLICY_TYPEHASH = keccak256(
        "GasPolicy(uint256 maxCostPerOp,Limit costLimit,address[] paymasters)Limit(uint8 kind,uint256 amount)"
    );
    bytes32 internal constant TRANSFER_POLICY_TYPEHASH = keccak256(
        "TransferPolicy(address target,uint256 maxValuePerUse,Limit valueLimit)Limit(uint8 kind,uint256 amount)"
    );
    bytes32 internal constant SESSION_SPEC_TYPEHASH = keccak256(
        "SessionSpec(address signer,uint48 validAfter,uint48 validUntil,uint48 period,bool wildcard,uint32 usageLimit,"
        "CallPolicy[] callPolicies,TransferPolicy[] transferPolicies,GasPolicy gas)"
        "ArgConstraint(uint8 condition,uint8 argType,uint8 argSize,uint32 index,bytes32 refValue,Limit limit)"
        "CallPolicy(address target,bytes4 selector,uint256 maxValuePerUse,Limit valueLimit,ArgConstraint[] constraints)"
        "GasPolicy(uint256 maxCostPerOp,Limit costLimit,address[] paymasters)"
        "Limit(uint8 kind,uint256 amount)"
        "TransferPolicy(address target,uint256 maxValuePerUse,Limit valueLimit)"
    );
    bytes32 internal constant ENABLE_SESSION_TYPEHASH = keccak256(
        "EnableSession(SessionSpec spec,uint64 nonce,uint32 epoch)"
        "ArgConstraint(uint8 condition,uint8 argType,uint8 argSize,uint32 index,bytes32 refValue,Limit limit)"
        "CallPolicy(address target,bytes4 selector,uint256 maxValuePerUse,Limit valueLimit,ArgConstraint[] constraints)"
        "GasPolicy(uint256 maxCostPerOp,Limit costLimit,address[] paymasters)"
        "Limit(uint8 kind,uint256 amount)"
        "SessionSpec(address signer,uint48 validAfter,uint48 validUntil,uint48 period,bool wildcard,uint32 usageLimit,"
        "CallPolicy[] callPolicies,TransferPolicy[] transferPolicies,GasPolicy gas)"
        "TransferPolicy(address target,uint256 maxValuePerUse,Limit valueLimit)"
    );
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant NAME_HASH = keccak256("SessionAccount");
    bytes32 internal constant VERSION_HASH = keccak256("1");

    function hashLimit(Limit memory l) internal pure returns (bytes32) {
        return keccak256(abi.encode(LIMIT_TYPEHASH, l.kind, l.amount));
    }

    function hashArgConstraint(ArgConstraint memory c) internal pure returns (bytes32) {
        return keccak256(abi.encode(
                ARG_CONSTRAINT_TYPEHASH, c.condition, c.argType, c.argSize, c.index, c.refValue, hashLimit(c.limit)
            ));
    }

    function hashCallPolicy(CallPolicy memory p) internal pure returns (bytes32) {
        bytes32[] memory hs = new bytes32[](p.constraints.length);
        for (uint256 i = 0; i < hs.length; i++) {
            hs[i] = hashArgConstraint(p.constraints[i]);
        }
        return keccak256(
            abi.encode(
                CALL_POLICY_TYPEHASH,
                p.target,
                p.selector,
                p.maxValuePerUse,
                hashLimit(p.valueLimit),
                keccak256(abi.encodePacked(hs))
            )
        );
    }

    function hashTransferPolicy(TransferPolicy memory t) internal pure returns (bytes32) {
        return keccak256(abi.encode(TRANSFER_POLICY_TYPEHASH, t.target, t.maxValuePerUse, hashLimit(t.valueLimit)));
    }

    function hashGasPolicy(GasPolicy memory g) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(GAS_POLICY_TYPEHASH, g.maxCostPerOp, hashLimit(g.costLimit), keccak256(abi.encodePacked(g.paymasters)))
        );
    }

    function hashSpec(SessionSpec memory s) internal pure returns (bytes32) {
        bytes32[] memory calls = new bytes32[](s.callPolicies.length);
        for (uint256 i = 0; i < calls.length; i++) {
            calls[i] = hashCallPolicy(s.callPolicies[i]);
        }
        bytes32[] memory transfers = new bytes32[](s.transferPolicies.length);
        for (uint256 i = 0; i < transfers.length; i++) {
            transfers[i] = hashTransferPolicy(s.transferPolicies[i]);
        }
        return keccak256(
            abi.encode(
                SESSION_SPEC_TYPEHASH,
                s.signer,
                s.validAfter,
                s.validUntil,
                s.period,
                s.wildcard,
                s.usageLimit,
                keccak256(abi.encodePacked(calls)),
                keccak256(abi.encodePacked(transfers)),
                hashGasPolicy(s.gas)
            )
        );
    }

    function hashEnable(SessionSpec memory s, uint64 nonce, uint32 epoch) internal pure returns (bytes32) {
        return keccak256(abi.encode(ENABLE_SESSION_TYPEHASH, hashSpec(s), nonce, epoch));
    }

    function domainSeparator(address verifyingContract) internal view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, verifyingContract));
    }
}
