// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/*
 * SessionAccount: an ERC-4337 account (EntryPoint v0.7 or v0.8, fixed per deployment by the
 * immutable ENTRY_POINT) with an ECDSA owner and policy-limited session keys. The same code
 * serves behind SessionAccountFactory's ERC-1167 clones and as an EIP-7702 delegate of an EOA.
 *
 * Owner
 *   Clone: the address given to the factory (stored at initialisation, which can only happen
 *   while the clone is being constructed). EIP-7702 EOA (nothing stored): the EOA itself,
 *   address(this). The owner acts through the EntryPoint (mode 0x00 ops) or by calling the
 *   account directly; execute/executeBatch/grantSession/revokeSession accept calls from the
 *   EntryPoint, the owner and the account itself.
 *
 * UserOperation.signature (first byte = mode; every ECDSA signature is 65 bytes r ‖ s ‖ v,
 * v ∈ {27, 28} or {0, 1}, s ≤ n/2, over the raw 32-byte digest, no "\x19Ethereum..." prefix)
 *   0x00 owner      0x00 ‖ sig(owner, userOpHash)                               66 bytes
 *   0x01 session    0x01 ‖ signer (20) ‖ periodIndex (uint48, 6 bytes big-endian)
 *                        ‖ sig(signer, userOpHash)                               92 bytes
 *   0x02 enable     0x02 ‖ abi.encode(SessionSpec spec, uint64 nonce, bytes ownerSig,
 *                                      uint48 periodIndex, bytes sessionSig)
 *                   ownerSig = sig(owner, EIP-712 digest of EnableSession{spec, nonce}) with
 *                   domain {name "SessionAccount", version "1", chainId, verifyingContract =
 *                   this account}; nonce must equal grantNonce(spec.signer), else
 *                   SessionEnableNonceMismatch. The spec is granted (as by grantSession) and
 *                   then used by this same op exactly like mode 0x01, sessionSig =
 *                   sig(spec.signer, userOpHash). Either signature wrong -> signature failure.
 *   Any other mode byte or length reverts InvalidSignatureFormat(). A wrong signature never
 *   reverts: validation runs to the end (so gas estimation with a dummy signature takes the
 *   full path) and returns the time range with the low 160 bits set to 1 (SIG_VALIDATION_FAILED).
 *
 * Session ops (modes 0x01 and 0x02), all checked in validateUserOp, in this order:
 *   1. session exists (SessionUnknown) and is not revoked (SessionIsRevoked)
 *   2. time range: [validAfter, validUntil or ∞]; when spec.period > 0, intersected with period
 *      periodIndex = [validAfter + periodIndex*period, validAfter + (periodIndex+1)*period - 1];
 *      when period == 0, periodIndex must be 0. Empty intersection -> SessionPeriodOutsideWindow.
 *      The range is returned in validationData (validUntil = 0 when unbounded); the account never
 *      reads TIMESTAMP/NUMBER: the EntryPoint enforces the range.
 *   3. usage count + 1 <= usageLimit unless usageLimit == 0 (SessionUsageLimitReached); counted
 *      once per op.
 *   4. callData must be execute(address,uint256,bytes) or executeBatch((address,uint256,bytes)[])
 *      (SessionCallNotAllowed). Each call, in order (callIndex = position in the batch, 0 for
 *      execute):
 *      a. target == this account -> SessionSelfCallNotAllowed (also for wildcard sessions)
 *      b. wildcard: nothing else is checked
 *      c. empty data = ETH transfer: the first transferPolicy whose target is the target or 0
 *         governs (none: SessionTransferNotAllowed); value <= maxValuePerUse
 *         (SessionTransferExceedsPerUse); then its valueLimit consumes value.
 *      d. data of 1..3 bytes -> SessionInvalidCallData
 *      e. otherwise the first callPolicy whose target matches (or is 0) and whose selector
 *         matches (or is 0) governs; none: SessionSelectorNotAllowed if some policy matched the
 *         target, else SessionTargetNotAllowed. value <= maxValuePerUse (SessionValueExceedsPerUse);
 *         valueLimit consumes value; then each constraint in order: its word must exist
 *         (SessionArgOutOfBounds), satisfy the condition (SessionArgConstraintFailed), and its
 *         limit consumes uint256(word).
 *   Consuming amount x from a limit: nothing when kind == NONE or x == 0. ALLOWANCE: if the
 *   op's periodIndex is later than the counter's, the counter restarts at 0 for that period;
 *   if earlier, SessionPeriodExpired. Then used + x <= amount or SessionCumulativeLimitExceeded.
 *   Counters live in this account's storage and are updated during validation (ERC-7562
 *   STO-010); a batch consumes call by call, so later calls see earlier ones. Validation state
 *   survives a reverting execution phase: an included op consumes its limits (and one use)
 *   even if its calls revert.
 *
 * Granting (grantSession or mode 0x02) replaces any previous session of the same signer with
 * fresh counters and bumps grantNonce(signer); revokeSession bumps it too, so an unused enable
 * signature dies with a revocation. Grant-time checks (InvalidSessionSpec): signer not zero and
 * not the account, validUntil = 0 or >= validAfter, known limit kinds and conditions, ALLOWANCE
 * only with period > 0.
 *
 * Storage: one ERC-7201 namespace "sessionaccount.storage.main" (no other slot is used), so a
 * 7702-delegated EOA keeps whatever other storage it had.
 *
 * Validation opcodes: no TIMESTAMP/NUMBER/BASEFEE/BALANCE/SELFBALANCE/ORIGIN/GASPRICE/…; the
 * only calls are ecrecover (precompile 0x01) and the prefund payment to the EntryPoint.
 */

import {IAccount} from "@account-abstraction/contracts-v07/interfaces/IAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts-v07/interfaces/PackedUserOperation.sol";
import "./SessionTypes.sol";

contract SessionAccount is IAccount {
    // ---------------------------------------------------------------- constants

    uint8 internal constant MODE_OWNER = 0x00;
    uint8 internal constant MODE_SESSION = 0x01;
    uint8 internal constant MODE_ENABLE = 0x02;

    uint256 internal constant SIG_VALIDATION_FAILED = 1;
    uint256 internal constant SECP256K1_HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    uint8 public constant STATUS_NONE = 0;
    uint8 public constant STATUS_ACTIVE = 1;
    uint8 public constant STATUS_REVOKED = 2;

    /// keccak256(abi.encode(uint256(keccak256("sessionaccount.storage.main")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 internal constant LAYOUT_SLOT = 0xa67e7059f37ea83f571607d1cd71044d1fb3f07cc1a3a40e1d143dce85e2d700;

    address public immutable ENTRY_POINT;

    // ---------------------------------------------------------------- storage

    struct StoredLimit {
        uint8 kind;
        uint48 periodIndex; // period of `used` (ALLOWANCE only)
        uint256 amount;
        uint256 used;
    }

    struct StoredConstraint {
        uint8 condition;
        uint32 index;
        bytes32 refValue;
        StoredLimit limit;
    }

    struct StoredCallPolicy {
        address target;
        bytes4 selector;
        uint256 maxValuePerUse;
        StoredLimit valueLimit;
        StoredConstraint[] constraints;
    }

    struct StoredTransferPolicy {
        address target;
        uint256 maxValuePerUse;
        StoredLimit valueLimit;
    }

    struct Session {
        // one slot
        uint8 status;
        bool wildcard;
        uint48 validAfter;
        uint48 validUntil;
        uint48 period;
        uint32 usageLimit;
        uint32 usageCount;
        uint32 maxConstraints; // most constraints in one call policy (sizes SessionUsed)
        StoredCallPolicy[] callPolicies;
        StoredTransferPolicy[] transferPolicies;
    }

    struct SignerSlot {
        uint64 nonce; // bumped by every grant and revoke; enable signatures must name it
        uint64 generation; // key of the current session in `sessions` (bumped by every grant)
        mapping(uint64 => Session) sessions;
    }

    /// @custom:storage-location erc7201:sessionaccount.storage.main
    struct Layout {
        address owner;
        mapping(address => SignerSlot) signers;
    }

    // ---------------------------------------------------------------- views' structs

    struct LimitUsage {
        uint48 periodIndex;
        uint256 used;
    }

    struct Usage {
        uint32 usageCount;
        LimitUsage[] callValue; // per call policy
        LimitUsage[][] callArgs; // per call policy, per constraint
        LimitUsage[] transferValue; // per transfer policy
    }

    struct SessionInfo {
        SessionSpec spec;
        uint8 status; // STATUS_*
        uint64 grantNonce; // the nonce the next enable signature for this signer must name
        uint32 usageCount;
    }

    struct Consumption {
        uint8 scope; // SCOPE_*
        uint32 policyIndex;
        uint32 constraintIndex;
        uint256 amount;
    }

    // ---------------------------------------------------------------- events

    event AccountInitialized(address indexed entryPoint, address indexed owner);
    event SessionGranted(address indexed signer, uint64 nonce, bytes32 specHash, SessionSpec spec);
    event SessionRevoked(address indexed signer, uint64 nonce);
    event SessionUsed(address indexed signer, uint48 periodIndex, uint32 usageCount, Consumption[] consumed);

    // ---------------------------------------------------------------- errors

    error NotFromEntryPoint(address caller);
    error NotAuthorized(address caller);
    error InitializeOnlyDuringConstruction();
    error InvalidOwner();
    error InvalidSignatureFormat();
    error InvalidSessionSpec(string reason);
    error SessionEnableNonceMismatch(address signer, uint64 signed, uint64 current);

    error SessionUnknown(address signer);
    error SessionIsRevoked(address signer); // (the event is SessionRevoked)
    error SessionPeriodOutsideWindow(address signer, uint48 periodIndex);
    error SessionUsageLimitReached(address signer, uint32 usageLimit);
    error SessionCallNotAllowed(bytes4 selector);
    error SessionSelfCallNotAllowed(uint256 callIndex);
    error SessionInvalidCallData(uint256 callIndex);
    error SessionTransferNotAllowed(uint256 callIndex, address target);
    error SessionTransferExceedsPerUse(uint256 callIndex, uint256 policyIndex, uint256 value, uint256 max);
    error SessionTargetNotAllowed(uint256 callIndex, address target);
    error SessionSelectorNotAllowed(uint256 callIndex, address target, bytes4 selector);
    error SessionValueExceedsPerUse(uint256 callIndex, uint256 policyIndex, uint256 value, uint256 max);
    error SessionArgOutOfBounds(uint256 callIndex, uint256 policyIndex, uint256 constraintIndex, uint256 wordIndex);
    error SessionArgConstraintFailed(
        uint256 callIndex, uint256 policyIndex, uint256 constraintIndex, uint8 condition, bytes32 actual, bytes32 refValue
    );
    error SessionPeriodExpired(uint48 periodIndex, uint48 counterPeriodIndex);
    error SessionCumulativeLimitExceeded(
        uint256 callIndex,
        uint8 scope,
        uint256 policyIndex,
        uint256 constraintIndex,
        uint256 used,
        uint256 amount,
        uint256 limit
    );

    // ---------------------------------------------------------------- setup

    constructor(address entryPoint_) {
        ENTRY_POINT = entryPoint_;
    }

    /// Sets the owner of a clone. Only callable while the clone is being constructed (its code
    /// is still empty), so neither a deployed clone, the implementation nor a 7702-delegated EOA
    /// (whose code is the delegation designator) can be (re)initialised by anyone.
    function initialize(address owner_) external {
        if (address(this).code.length != 0) revert InitializeOnlyDuringConstruction();
        if (owner_ == address(0)) revert InvalidOwner();
        Layout storage $ = _layout();
        if ($.owner != address(0)) revert InitializeOnlyDuringConstruction();
        $.owner = owner_;
        emit AccountInitialized(ENTRY_POINT, owner_);
    }

    receive() external payable {}

    // ---------------------------------------------------------------- ERC-4337

    function entryPoint() external view returns (address) {
        return ENTRY_POINT;
    }

    function validateUserOp(PackedUserOperation calldata userOp, bytes32 userOpHash, uint256 missingAccountFunds)
        external
        returns (uint256 validationData)
    {
        if (msg.sender != ENTRY_POINT) revert NotFromEntryPoint(msg.sender);
        validationData = _validateSignature(userOp, userOpHash);
        if (missingAccountFunds != 0) {
            assembly ("memory-safe") {
                // GAS immediately before CALL (ERC-7562 OP-012); failure is the EntryPoint's to report
                pop(call(gas(), caller(), missingAccountFunds, 0, 0, 0, 0))
            }
        }
    }

    function _validateSignature(PackedUserOperation calldata userOp, bytes32 userOpHash) internal returns (uint256) {
        bytes calldata sig = userOp.signature;
        if (sig.length == 0) revert InvalidSignatureFormat();
        uint8 mode = uint8(sig[0]);
        if (mode == MODE_OWNER) {
            if (sig.length != 66) revert InvalidSignatureFormat();
            return _recoverCalldata(userOpHash, sig[1:66]) == owner() ? 0 : SIG_VALIDATION_FAILED;
        }
        if (mode == MODE_SESSION) {
            if (sig.length != 92) revert InvalidSignatureFormat();
            address signer = address(bytes20(sig[1:21]));
            uint48 periodIndex = uint48(bytes6(sig[21:27]));
            uint256 vd = _useSession(userOp.callData, signer, periodIndex);
            bool ok = _recoverCalldata(userOpHash, sig[27:92]) == signer;
            return ok ? vd : vd | SIG_VALIDATION_FAILED;
        }
        if (mode == MODE_ENABLE) {
            (SessionSpec memory spec, uint64 nonce, bytes memory ownerSig, uint48 periodIndex, bytes memory sessionSig)
            = abi.decode(sig[1:], (SessionSpec, uint64, bytes, uint48, bytes));
            if (ownerSig.length != 65 || sessionSig.length != 65) revert InvalidSignatureFormat();
            bool ok = _recoverMemory(enableDigest(spec, nonce), ownerSig) == owner();
            _grant(spec, true, nonce);
            uint256 vd = _useSession(userOp.callData, spec.signer, periodIndex);
            ok = ok && _recoverMemory(userOpHash, sessionSig) == spec.signer;
            return ok ? vd : vd | SIG_VALIDATION_FAILED;
        }
        revert InvalidSignatureFormat();
    }

    // ---------------------------------------------------------------- execution

    function execute(address target, uint256 value, bytes calldata data) external {
        _requireAuthorized();
        _call(target, value, data);
    }

    function executeBatch(Call[] calldata calls) external {
        _requireAuthorized();
        for (uint256 i = 0; i < calls.length; i++) {
            _call(calls[i].target, calls[i].value, calls[i].data);
        }
    }

    function _call(address target, uint256 value, bytes calldata data) internal {
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    function _requireAuthorized() internal view {
        if (msg.sender != ENTRY_POINT && msg.sender != address(this) && msg.sender != owner()) {
            revert NotAuthorized(msg.sender);
        }
    }

    // ---------------------------------------------------------------- session management

    function grantSession(SessionSpec memory spec) external {
        _requireAuthorized();
        _grant(spec, false, 0);
    }

    /// Revokes the signer's current session (if any) and bumps its grant nonce, which also
    /// invalidates enable signatures not used yet.
    function revokeSession(address signer) external {
        _requireAuthorized();
        SignerSlot storage slot = _layout().signers[signer];
        uint64 nonce = slot.nonce + 1;
        slot.nonce = nonce;
        Session storage s = slot.sessions[slot.generation];
        if (s.status == STATUS_ACTIVE) s.status = STATUS_REVOKED;
        emit SessionRevoked(signer, nonce);
    }

    function _grant(SessionSpec memory spec, bool checkNonce, uint64 signedNonce) internal {
        _checkSpec(spec);
        SignerSlot storage slot = _layout().signers[spec.signer];
        uint64 current = slot.nonce;
        if (checkNonce && signedNonce != current) {
            revert SessionEnableNonceMismatch(spec.signer, signedNonce, current);
        }
        slot.nonce = current + 1;
        uint64 generation = slot.generation + 1;
        slot.generation = generation;
        Session storage s = slot.sessions[generation];
        s.status = STATUS_ACTIVE;
        s.wildcard = spec.wildcard;
        s.validAfter = spec.validAfter;
        s.validUntil = spec.validUntil;
        s.period = spec.period;
        s.usageLimit = spec.usageLimit;
        uint256 maxConstraints = 0;
        for (uint256 i = 0; i < spec.callPolicies.length; i++) {
            CallPolicy memory p = spec.callPolicies[i];
            StoredCallPolicy storage sp = s.callPolicies.push();
            sp.target = p.target;
            sp.selector = p.selector;
            sp.maxValuePerUse = p.maxValuePerUse;
            _storeLimit(sp.valueLimit, p.valueLimit);
            if (p.constraints.length > maxConstraints) maxConstraints = p.constraints.length;
            for (uint256 j = 0; j < p.constraints.length; j++) {
                ArgConstraint memory c = p.constraints[j];
                StoredConstraint storage sc = sp.constraints.push();
                sc.condition = c.condition;
                sc.index = c.index;
                sc.refValue = c.refValue;
                _storeLimit(sc.limit, c.limit);
            }
        }
        s.maxConstraints = uint32(maxConstraints);
        for (uint256 i = 0; i < spec.transferPolicies.length; i++) {
            TransferPolicy memory t = spec.transferPolicies[i];
            StoredTransferPolicy storage st = s.transferPolicies.push();
            st.target = t.target;
            st.maxValuePerUse = t.maxValuePerUse;
            _storeLimit(st.valueLimit, t.valueLimit);
        }
        emit SessionGranted(spec.signer, current + 1, SessionSpecHash.hashSpec(spec), spec);
    }

    function _storeLimit(StoredLimit storage dst, Limit memory src) private {
        if (src.kind == LIMIT_NONE) return; // fresh storage is already {NONE, 0, 0, 0}
        dst.kind = src.kind;
        dst.amount = src.amount;
    }

    function _checkSpec(SessionSpec memory spec) internal view {
        if (spec.signer == address(0)) revert InvalidSessionSpec("signer is zero");
        if (spec.signer == address(this)) revert InvalidSessionSpec("signer is the account");
        if (spec.validUntil != 0 && spec.validUntil < spec.validAfter) {
            revert InvalidSessionSpec("validUntil before validAfter");
        }
        if (spec.callPolicies.length > type(uint32).max || spec.transferPolicies.length > type(uint32).max) {
            revert InvalidSessionSpec("too many policies");
        }
        for (uint256 i = 0; i < spec.callPolicies.length; i++) {
            CallPolicy memory p = spec.callPolicies[i];
            _checkLimit(p.valueLimit, spec.period);
            if (p.constraints.length > type(uint32).max) revert InvalidSessionSpec("too many constraints");
            for (uint256 j = 0; j < p.constraints.length; j++) {
                if (p.constraints[j].condition > COND_LTE) revert InvalidSessionSpec("unknown condition");
                _checkLimit(p.constraints[j].limit, spec.period);
            }
        }
        for (uint256 i = 0; i < spec.transferPolicies.length; i++) {
            _checkLimit(spec.transferPolicies[i].valueLimit, spec.period);
        }
    }

    function _checkLimit(Limit memory l, uint48 period) private pure {
        if (l.kind > LIMIT_ALLOWANCE) revert InvalidSessionSpec("unknown limit kind");
        if (l.kind == LIMIT_ALLOWANCE && period == 0) revert InvalidSessionSpec("allowance without period");
    }

    // ---------------------------------------------------------------- session validation

    function _useSession(bytes calldata callData, address signer, uint48 periodIndex) internal returns (uint256) {
        SignerSlot storage slot = _layout().signers[signer];
        Session storage s = slot.sessions[slot.generation];
        uint8 status = s.status;
        if (status == STATUS_NONE) revert SessionUnknown(signer);
        if (status == STATUS_REVOKED) revert SessionIsRevoked(signer);

        (uint48 validAfter, uint48 validUntil) = _periodWindow(s, signer, periodIndex);

        uint32 count = s.usageCount + 1;
        uint32 usageLimit = s.usageLimit;
        if (usageLimit != 0 && count > usageLimit) revert SessionUsageLimitReached(signer, usageLimit);
        s.usageCount = count;

        bytes4 selector = callData.length >= 4 ? bytes4(callData[:4]) : bytes4(0);
        Consumption[] memory consumed;
        uint256 n = 0;
        if (selector == this.execute.selector) {
            (address target, uint256 value, bytes memory data) = abi.decode(callData[4:], (address, uint256, bytes));
            consumed = new Consumption[](s.wildcard ? 0 : 1 + uint256(s.maxConstraints));
            n = _checkCall(s, 0, target, value, data, periodIndex, consumed, n);
        } else if (selector == this.executeBatch.selector) {
            Call[] memory calls = abi.decode(callData[4:], (Call[]));
            consumed = new Consumption[](s.wildcard ? 0 : calls.length * (1 + uint256(s.maxConstraints)));
            for (uint256 i = 0; i < calls.length; i++) {
                n = _checkCall(s, i, calls[i].target, calls[i].value, calls[i].data, periodIndex, consumed, n);
            }
        } else {
            revert SessionCallNotAllowed(selector);
        }
        assembly ("memory-safe") {
            mstore(consumed, n)
        }
        emit SessionUsed(signer, periodIndex, count, consumed);
        return (uint256(validUntil) << 160) | (uint256(validAfter) << 208);
    }

    function _periodWindow(Session storage s, address signer, uint48 periodIndex)
        internal
        view
        returns (uint48 validAfter, uint48 validUntil)
    {
        uint256 lo = s.validAfter;
        uint256 hi = s.validUntil == 0 ? type(uint48).max : s.validUntil;
        uint256 period = s.period;
        if (period == 0) {
            if (periodIndex != 0) revert SessionPeriodOutsideWindow(signer, periodIndex);
        } else {
            lo += uint256(periodIndex) * period;
            uint256 end = lo + period - 1;
            if (end < hi) hi = end;
        }
        if (lo > hi) revert SessionPeriodOutsideWindow(signer, periodIndex);
        validAfter = uint48(lo);
        validUntil = hi == type(uint48).max ? 0 : uint48(hi);
    }

    function _checkCall(
        Session storage s,
        uint256 callIndex,
        address target,
        uint256 value,
        bytes memory data,
        uint48 periodIndex,
        Consumption[] memory consumed,
        uint256 n
    ) internal returns (uint256) {
        if (target == address(this)) revert SessionSelfCallNotAllowed(callIndex);
        if (s.wildcard) return n;

        if (data.length == 0) {
            uint256 count = s.transferPolicies.length;
            for (uint256 i = 0; i < count; i++) {
                StoredTransferPolicy storage t = s.transferPolicies[i];
                address policyTarget = t.target;
                if (policyTarget != target && policyTarget != address(0)) continue;
                uint256 max = t.maxValuePerUse;
                if (value > max) revert SessionTransferExceedsPerUse(callIndex, i, value, max);
                if (_consume(t.valueLimit, value, periodIndex, callIndex, SCOPE_TRANSFER_VALUE, i, 0)) {
                    consumed[n++] = Consumption(SCOPE_TRANSFER_VALUE, uint32(i), 0, value);
                }
                return n;
            }
            revert SessionTransferNotAllowed(callIndex, target);
        }
        if (data.length < 4) revert SessionInvalidCallData(callIndex);

        bytes4 selector = bytes4(data);
        bool targetMatched = false;
        uint256 policies = s.callPolicies.length;
        for (uint256 i = 0; i < policies; i++) {
            StoredCallPolicy storage p = s.callPolicies[i];
            address policyTarget = p.target;
            if (policyTarget != target && policyTarget != address(0)) continue;
            targetMatched = true;
            bytes4 policySelector = p.selector;
            if (policySelector != selector && policySelector != bytes4(0)) continue;

            uint256 max = p.maxValuePerUse;
            if (value > max) revert SessionValueExceedsPerUse(callIndex, i, value, max);
            if (_consume(p.valueLimit, value, periodIndex, callIndex, SCOPE_CALL_VALUE, i, 0)) {
                consumed[n++] = Consumption(SCOPE_CALL_VALUE, uint32(i), 0, value);
            }
            uint256 constraints = p.constraints.length;
            for (uint256 j = 0; j < constraints; j++) {
                StoredConstraint storage c = p.constraints[j];
                uint256 wordIndex = c.index;
                uint256 offset = 4 + wordIndex * 32;
                if (data.length < offset + 32) revert SessionArgOutOfBounds(callIndex, i, j, wordIndex);
                bytes32 word;
                assembly ("memory-safe") {
                    word := mload(add(add(data, 32), offset))
                }
                uint8 condition = c.condition;
                bytes32 ref = c.refValue;
                if (!_compare(condition, word, ref)) {
                    revert SessionArgConstraintFailed(callIndex, i, j, condition, word, ref);
                }
                if (_consume(c.limit, uint256(word), periodIndex, callIndex, SCOPE_CALL_ARG, i, j)) {
                    consumed[n++] = Consumption(SCOPE_CALL_ARG, uint32(i), uint32(j), uint256(word));
                }
            }
            return n;
        }
        if (targetMatched) revert SessionSelectorNotAllowed(callIndex, target, selector);
        revert SessionTargetNotAllowed(callIndex, target);
    }

    function _compare(uint8 condition, bytes32 word, bytes32 ref) private pure returns (bool) {
        uint256 a = uint256(word);
        uint256 b = uint256(ref);
        if (condition == COND_EQ) return a == b;
        if (condition == COND_NEQ) return a != b;
        if (condition == COND_GT) return a > b;
        if (condition == COND_GTE) return a >= b;
        if (condition == COND_LT) return a < b;
        return a <= b; // COND_LTE (others are refused at grant time)
    }

    /// Adds `amount` to a limit's counter; false when the limit does not count it.
    function _consume(
        StoredLimit storage l,
        uint256 amount,
        uint48 periodIndex,
        uint256 callIndex,
        uint8 scope,
        uint256 policyIndex,
        uint256 constraintIndex
    ) private returns (bool) {
        uint8 kind = l.kind;
        if (kind == LIMIT_NONE || amount == 0) return false;
        uint256 used = l.used;
        if (kind == LIMIT_ALLOWANCE) {
            uint48 counterPeriod = l.periodIndex;
            if (periodIndex > counterPeriod) {
                used = 0;
                l.periodIndex = periodIndex;
            } else if (periodIndex < counterPeriod) {
                revert SessionPeriodExpired(periodIndex, counterPeriod);
            }
        }
        uint256 cap = l.amount;
        if (amount > cap - used) {
            revert SessionCumulativeLimitExceeded(callIndex, scope, policyIndex, constraintIndex, used, amount, cap);
        }
        l.used = used + amount;
        return true;
    }

    // ---------------------------------------------------------------- ECDSA

    function _recoverCalldata(bytes32 digest, bytes calldata sig) internal pure returns (address) {
        return _recover(digest, bytes32(sig[0:32]), bytes32(sig[32:64]), uint8(sig[64]));
    }

    function _recoverMemory(bytes32 digest, bytes memory sig) internal pure returns (address) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(sig, 32))
            s := mload(add(sig, 64))
            v := byte(0, mload(add(sig, 96)))
        }
        return _recover(digest, r, s, v);
    }

    /// ecrecover with malleability checks; address(0) for any invalid signature.
    function _recover(bytes32 digest, bytes32 r, bytes32 s, uint8 v) internal pure returns (address) {
        if (uint256(s) > SECP256K1_HALF_N) return address(0);
        if (v < 27) v += 27;
        if (v != 27 && v != 28) return address(0);
        return ecrecover(digest, v, r, s);
    }

    // ---------------------------------------------------------------- views

    function owner() public view returns (address) {
        address stored = _layout().owner;
        return stored == address(0) ? address(this) : stored;
    }

    function domainSeparator() public view returns (bytes32) {
        return SessionSpecHash.domainSeparator(address(this));
    }

    function specHash(SessionSpec memory spec) external pure returns (bytes32) {
        return SessionSpecHash.hashSpec(spec);
    }

    /// The digest the owner signs to enable `spec` with grant nonce `nonce` (mode 0x02).
    function enableDigest(SessionSpec memory spec, uint64 nonce) public view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), SessionSpecHash.hashEnable(spec, nonce)));
    }

    function grantNonce(address signer) external view returns (uint64) {
        return _layout().signers[signer].nonce;
    }

    function getSession(address signer) external view returns (SessionInfo memory info) {
        SignerSlot storage slot = _layout().signers[signer];
        Session storage s = slot.sessions[slot.generation];
        info.status = s.status;
        info.grantNonce = slot.nonce;
        info.usageCount = s.usageCount;
        if (s.status == STATUS_NONE) return info;
        SessionSpec memory spec = info.spec;
        spec.signer = signer;
        spec.validAfter = s.validAfter;
        spec.validUntil = s.validUntil;
        spec.period = s.period;
        spec.wildcard = s.wildcard;
        spec.usageLimit = s.usageLimit;
        spec.callPolicies = new CallPolicy[](s.callPolicies.length);
        for (uint256 i = 0; i < s.callPolicies.length; i++) {
            StoredCallPolicy storage sp = s.callPolicies[i];
            CallPolicy memory p = spec.callPolicies[i];
            p.target = sp.target;
            p.selector = sp.selector;
            p.maxValuePerUse = sp.maxValuePerUse;
            p.valueLimit = Limit(sp.valueLimit.kind, sp.valueLimit.amount);
            p.constraints = new ArgConstraint[](sp.constraints.length);
            for (uint256 j = 0; j < sp.constraints.length; j++) {
                StoredConstraint storage sc = sp.constraints[j];
                p.constraints[j] = ArgConstraint(sc.condition, sc.index, sc.refValue, Limit(sc.limit.kind, sc.limit.amount));
            }
        }
        spec.transferPolicies = new TransferPolicy[](s.transferPolicies.length);
        for (uint256 i = 0; i < s.transferPolicies.length; i++) {
            StoredTransferPolicy storage st = s.transferPolicies[i];
            spec.transferPolicies[i] =
                TransferPolicy(st.target, st.maxValuePerUse, Limit(st.valueLimit.kind, st.valueLimit.amount));
        }
    }

    /// Usage count and every cumulative counter as stored (an ALLOWANCE counter holds `used` of
    /// period `periodIndex`; a later period starts from 0).
    function getUsage(address signer) external view returns (Usage memory u) {
        Session storage s = _current(signer);
        u.usageCount = s.usageCount;
        u.callValue = new LimitUsage[](s.callPolicies.length);
        u.callArgs = new LimitUsage[][](s.callPolicies.length);
        for (uint256 i = 0; i < s.callPolicies.length; i++) {
            StoredCallPolicy storage sp = s.callPolicies[i];
            u.callValue[i] = LimitUsage(sp.valueLimit.periodIndex, sp.valueLimit.used);
            u.callArgs[i] = new LimitUsage[](sp.constraints.length);
            for (uint256 j = 0; j < sp.constraints.length; j++) {
                u.callArgs[i][j] = LimitUsage(sp.constraints[j].limit.periodIndex, sp.constraints[j].limit.used);
            }
        }
        u.transferValue = new LimitUsage[](s.transferPolicies.length);
        for (uint256 i = 0; i < s.transferPolicies.length; i++) {
            StoredTransferPolicy storage st = s.transferPolicies[i];
            u.transferValue[i] = LimitUsage(st.valueLimit.periodIndex, st.valueLimit.used);
        }
    }

    /// What is left of one cumulative limit in period `periodIndex` (ignored for LIFETIME);
    /// type(uint256).max when the limit is NONE. Reverts (index out of bounds) for a bad index.
    function remaining(address signer, uint8 scope, uint256 policyIndex, uint256 constraintIndex, uint48 periodIndex)
        external
        view
        returns (uint256)
    {
        Session storage s = _current(signer);
        StoredLimit storage l;
        if (scope == SCOPE_CALL_VALUE) l = s.callPolicies[policyIndex].valueLimit;
        else if (scope == SCOPE_CALL_ARG) l = s.callPolicies[policyIndex].constraints[constraintIndex].limit;
        else if (scope == SCOPE_TRANSFER_VALUE) l = s.transferPolicies[policyIndex].valueLimit;
        else revert InvalidSessionSpec("unknown scope");
        if (l.kind == LIMIT_NONE) return type(uint256).max;
        if (l.kind == LIMIT_ALLOWANCE) {
            if (periodIndex > l.periodIndex) return l.amount;
            if (periodIndex < l.periodIndex) return 0;
        }
        return l.amount - l.used;
    }

    /// Uses left before SessionUsageLimitReached; type(uint32).max when unlimited.
    function remainingUses(address signer) external view returns (uint32) {
        Session storage s = _current(signer);
        if (s.usageLimit == 0) return type(uint32).max;
        return s.usageLimit - s.usageCount;
    }

    /// The validAfter/validUntil a session op naming `periodIndex` gets (validUntil 0 = none).
    function periodBounds(address signer, uint48 periodIndex) external view returns (uint48, uint48) {
        return _periodWindow(_current(signer), signer, periodIndex);
    }

    /// The period index covering block.timestamp (a view for clients; validation never reads the
    /// clock). 0 before validAfter or when the session has no period.
    function currentPeriod(address signer) external view returns (uint48) {
        Session storage s = _current(signer);
        if (s.period == 0 || block.timestamp < s.validAfter) return 0;
        return uint48((block.timestamp - s.validAfter) / s.period);
    }

    function _current(address signer) private view returns (Session storage) {
        SignerSlot storage slot = _layout().signers[signer];
        return slot.sessions[slot.generation];
    }

    function _layout() private pure returns (Layout storage $) {
        assembly ("memory-safe") {
            $.slot := LAYOUT_SLOT
        }
    }
}
