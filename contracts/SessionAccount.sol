// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/*
 * SessionAccount: an ERC-4337 account (EntryPoint v0.7, v0.8 or v0.9, fixed per deployment by the
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
 *                   ownerSig = sig(owner, EIP-712 digest of EnableSession{spec, nonce, epoch})
 *                   with domain {name "SessionAccount", version "1", chainId, verifyingContract =
 *                   this account}; nonce must equal grantNonce(spec.signer), else
 *                   SessionEnableNonceMismatch; epoch = epoch() (after the bump below). The spec is granted (as by grantSession) and
 *                   then used by this same op exactly like mode 0x01, sessionSig =
 *                   sig(spec.signer, userOpHash). Either signature wrong -> signature failure.
 *   Any other mode byte or length reverts InvalidSignatureFormat(). A wrong signature never
 *   reverts: validation runs to the end (so gas estimation with a dummy signature takes the
 *   full path) and returns the time range with the low 160 bits set to 1 (SIG_VALIDATION_FAILED).
 *
 * Epochs (EIP-7702 re-delegation): every session belongs to the epoch current at its grant;
 *   revokeAllSessions() and any op whose initCode is the EIP-7702 marker (it carries an
 *   authorization) signed in mode 0x00 or 0x02 start the next epoch before anything else, which
 *   ends every earlier session; a mode 0x01 op with the marker reverts SessionDelegationNotAllowed.
 *
 * Session ops (modes 0x01 and 0x02), all checked in validateUserOp, in this order:
 *   1. session exists (SessionUnknown), is not revoked and belongs to the current epoch
 *      (SessionIsRevoked)
 *   2. time range: [validAfter, validUntil or ∞]; when spec.period > 0, intersected with period
 *      periodIndex = [validAfter + periodIndex*period, validAfter + (periodIndex+1)*period - 1];
 *      when period == 0, periodIndex must be 0. Empty intersection -> SessionPeriodOutsideWindow.
 *      The range is returned in validationData (validUntil = 0 when unbounded); the account never
 *      reads TIMESTAMP/NUMBER: the EntryPoint enforces the range.
 *   3. usage count + 1 <= usageLimit unless usageLimit == 0 (SessionUsageLimitReached); counted
 *      once per op.
 *   4. gas (wildcard sessions too): a non-empty paymasterAndData must name a paymaster of
 *      spec.gas.paymasters (SessionPaymasterNotAllowed); the op's maximum cost = (preVerificationGas
 *      + verificationGasLimit + callGasLimit + paymasterVerificationGasLimit +
 *      paymasterPostOpGasLimit) * maxFeePerGas, saturating, must be <= gas.maxCostPerOp
 *      (SessionGasCostExceedsPerOp); without paymaster gas.costLimit consumes that cost (scope
 *      SCOPE_GAS, callIndex/policyIndex/constraintIndex 0).
 *   5. callData must be execute(address,uint256,bytes) or executeBatch((address,uint256,bytes)[])
 *      (SessionCallNotAllowed), a batch of at most MAX_SESSION_CALLS calls (SessionTooManyCalls).
 *      Each call, in order (callIndex = position in the batch, 0 for execute):
 *      a. target == this account -> SessionSelfCallNotAllowed (also for wildcard sessions)
 *      a'. target is an EntryPoint (ENTRY_POINT or the canonical v0.6-v0.9 addresses) and the call
 *         is not exactly depositTo(this account), or target == IMPLEMENTATION ->
 *         SessionProtectedTarget (also for wildcard sessions)
 *      b. wildcard: nothing else is checked
 *      c. empty data = ETH transfer: the first transferPolicy whose target is the target or 0
 *         governs (none: SessionTransferNotAllowed); value <= maxValuePerUse
 *         (SessionTransferExceedsPerUse); then its valueLimit consumes value.
 *      d. data of 1..3 bytes -> SessionInvalidCallData
 *      e. otherwise the first callPolicy whose target matches (or is 0) and whose selector
 *         matches (or is 0) governs; none: SessionSelectorNotAllowed if some policy matched the
 *         target, else SessionTargetNotAllowed. value <= maxValuePerUse (SessionValueExceedsPerUse);
 *         valueLimit consumes value; then each constraint in order: its word must exist
 *         (SessionArgOutOfBounds), be the canonical encoding of the constraint's argType/argSize
 *         (SessionArgNotCanonical), satisfy the condition (SessionArgConstraintFailed; ARG_INT
 *         compares signed), and its limit consumes uint256(word).
 *      Policies are found through (target, selector) indexes written at grant time (the lowest
 *      matching index, as a scan in order would find), so a call costs the same whatever the
 *      number of policies.
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
 * only with period > 0, known argument types with a size only for uint/int/bytes (1..32), a
 * refValue canonical for its type, no cumulative limit on an int argument, no zero paymaster.
 *
 * ERC-1271 (isValidSignature) answers for the OWNER only, in the ERC-7739 forms (contracts/Erc7739.sol):
 *   a PersonalSign or TypedDataSign digest nested in this account's EIP-712 domain, so a signature
 *   is bound to this account and chain. A bare ECDSA signature over `hash` is never accepted (not
 *   even the 7702 EOA's own: contracts that see code ask this function). Session keys cannot sign
 *   for the account: a 1271 signature has no call, value or gas to hold to a policy, so it would be
 *   full authority (a Permit2 permit moves every approved token). eip712Domain() is ERC-5267.
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
import {Erc7739} from "./Erc7739.sol";

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

    /// Most calls one session op may make (executeBatch); bounds validation gas and the
    /// bundler's evaluation work per op.
    uint256 public constant MAX_SESSION_CALLS = 256;

    // Every EntryPoint an account may hold a deposit or stake in: protected targets for sessions
    // (withdrawTo / withdrawStake / unlockStake / incrementNonce act for msg.sender = the account).
    address internal constant ENTRY_POINT_V06 = 0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789;
    address internal constant ENTRY_POINT_V07 = 0x0000000071727De22E5E9d8BAf0edAc6f37da032;
    address internal constant ENTRY_POINT_V08 = 0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108;
    address internal constant ENTRY_POINT_V09 = 0x433709009B8330FDa32311DF1C2AFA402eD8D009;
    bytes4 internal constant DEPOSIT_TO_SELECTOR = 0xb760faf9; // depositTo(address)
    /// initCode of an op that carries an EIP-7702 authorization (EntryPoint v0.8): 0x7702 ‖ zeros
    bytes20 internal constant EIP7702_MARKER = bytes20(bytes2(0x7702));

    bytes4 internal constant ERC1271_MAGIC = 0x1626ba7e;
    bytes4 internal constant ERC1271_INVALID = 0xffffffff;
    /// ERC-7739 support detection: isValidSignature(0x7739…7739, any) returns 0x77390001
    bytes32 internal constant ERC7739_PROBE = 0x7739773977397739773977397739773977397739773977397739773977397739;
    bytes4 internal constant ERC7739_SUPPORTED = 0x77390001;

    address public immutable ENTRY_POINT;
    /// This implementation's own address (what clones and 7702 EOAs delegate to).
    address public immutable IMPLEMENTATION;

    // ---------------------------------------------------------------- storage

    struct StoredLimit {
        uint8 kind;
        uint48 periodIndex; // period of `used` (ALLOWANCE only)
        uint256 amount;
        uint256 used;
    }

    struct StoredConstraint {
        uint8 condition;
        uint8 argType;
        uint8 argSize;
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

    struct StoredGas {
        uint256 maxCostPerOp;
        StoredLimit costLimit;
        address[] paymasters;
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
        uint32 epoch; // Layout.epoch at grant time; a later epoch ends the session
        StoredCallPolicy[] callPolicies;
        StoredTransferPolicy[] transferPolicies;
        StoredGas gas;
        // (target, selector) index of callPolicies: the lowest policy index + 1 per exact key
        // (keccak256(target, selector), zero target / selector = any), so a call finds its
        // policy in at most four lookups whatever the number of policies
        mapping(bytes32 => uint256) callPolicyOf;
        mapping(address => uint256) firstPolicyForTarget; // lowest index + 1 with this target
        mapping(address => uint256) transferPolicyOf; // lowest index + 1 per target (zero = any)
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
        uint32 epoch; // bumped by revokeAllSessions and by an owner-signed (re)delegation op
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
        LimitUsage gasCost; // GasPolicy.costLimit
    }

    struct SessionInfo {
        SessionSpec spec;
        uint8 status; // STATUS_*
        uint64 grantNonce; // the nonce the next enable signature for this signer must name
        uint32 usageCount;
        uint32 epoch; // the account's current epoch (enable signatures must name it)
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
    event AllSessionsRevoked(uint32 epoch);
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
    error SessionProtectedTarget(uint256 callIndex, address target);
    error SessionTooManyCalls(uint256 calls, uint256 max);
    error SessionPaymasterNotAllowed(address paymaster);
    error SessionGasCostExceedsPerOp(uint256 cost, uint256 max);
    error SessionDelegationNotAllowed();
    error SessionArgNotCanonical(uint256 callIndex, uint256 policyIndex, uint256 constraintIndex, uint8 argType, bytes32 actual);
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
        IMPLEMENTATION = address(this);
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
        // An op carrying an EIP-7702 authorization (re)delegates this EOA: owner-signed modes start
        // a new epoch (grants of an earlier delegation do not come back); a session key may not
        // carry one.
        bool delegating = userOp.initCode.length >= 20 && bytes20(userOp.initCode[:20]) == EIP7702_MARKER;
        if (mode == MODE_OWNER) {
            if (sig.length != 66) revert InvalidSignatureFormat();
            if (delegating) _newEpoch();
            return _recoverCalldata(userOpHash, sig[1:66]) == owner() ? 0 : SIG_VALIDATION_FAILED;
        }
        if (mode == MODE_SESSION) {
            if (sig.length != 92) revert InvalidSignatureFormat();
            if (delegating) revert SessionDelegationNotAllowed();
            address signer = address(bytes20(sig[1:21]));
            uint48 periodIndex = uint48(bytes6(sig[21:27]));
            uint256 vd = _useSession(userOp, signer, periodIndex);
            bool ok = _recoverCalldata(userOpHash, sig[27:92]) == signer;
            return ok ? vd : vd | SIG_VALIDATION_FAILED;
        }
        if (mode == MODE_ENABLE) {
            (SessionSpec memory spec, uint64 nonce, bytes memory ownerSig, uint48 periodIndex, bytes memory sessionSig)
            = abi.decode(sig[1:], (SessionSpec, uint64, bytes, uint48, bytes));
            if (ownerSig.length != 65 || sessionSig.length != 65) revert InvalidSignatureFormat();
            if (delegating) _newEpoch();
            bool ok = _recoverMemory(enableDigest(spec, nonce), ownerSig) == owner();
            _grant(spec, true, nonce);
            uint256 vd = _useSession(userOp, spec.signer, periodIndex);
            ok = ok && _recoverMemory(userOpHash, sessionSig) == spec.signer;
            return ok ? vd : vd | SIG_VALIDATION_FAILED;
        }
        revert InvalidSignatureFormat();
    }

    // ---------------------------------------------------------------- ERC-1271 / ERC-7739

    /// Whether the owner signed `hash` for this account (see the header and Erc7739.sol): a
    /// TypedDataSign wrapping when the signature carries the app domain and contents that rebuild
    /// `hash`, else PersonalSign with a 65-byte signature. Session keys never qualify.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (hash == ERC7739_PROBE) return ERC7739_SUPPORTED;
        if (signature.length < Erc7739.ECDSA_LENGTH) return ERC1271_INVALID;
        bytes32 digest = Erc7739.typedDataSignDigest(
            hash, signature, SessionSpecHash.NAME_HASH, SessionSpecHash.VERSION_HASH, address(this)
        );
        if (digest == bytes32(0)) {
            if (signature.length != Erc7739.ECDSA_LENGTH) return ERC1271_INVALID;
            digest = Erc7739.personalSignDigest(domainSeparator(), hash);
        }
        address signer = _recoverCalldata(digest, signature[:Erc7739.ECDSA_LENGTH]);
        return signer != address(0) && signer == owner() ? ERC1271_MAGIC : ERC1271_INVALID;
    }

    /// ERC-5267: the EIP-712 domain of enable signatures and of ERC-7739 signatures. Encoded by
    /// hand: the compiler's encoder for this tuple of strings added 1.7 kB to an account that must
    /// stay under the EIP-170 code size limit.
    function eip712Domain()
        external
        view
        returns (
            bytes1, /* fields: name, version, chainId, verifyingContract */
            string memory, /* name */
            string memory, /* version */
            uint256, /* chainId */
            address, /* verifyingContract */
            bytes32, /* salt */
            uint256[] memory /* extensions */
        )
    {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, shl(248, 0x0f))
            mstore(add(m, 0x20), 0xe0) // name
            mstore(add(m, 0x40), 0x120) // version
            mstore(add(m, 0x60), chainid())
            mstore(add(m, 0x80), address())
            mstore(add(m, 0xa0), 0) // salt
            mstore(add(m, 0xc0), 0x160) // extensions
            mstore(add(m, 0xe0), 14)
            mstore(add(m, 0x100), "SessionAccount")
            mstore(add(m, 0x120), 1)
            mstore(add(m, 0x140), "1")
            mstore(add(m, 0x160), 0)
            return(m, 0x180)
        }
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

    /// Ends every session at once (all signers, all counters): the next epoch starts empty. Also
    /// what an owner-signed op carrying an EIP-7702 authorization does (see _validateSignature).
    function revokeAllSessions() external {
        _requireAuthorized();
        _newEpoch();
    }

    function _newEpoch() internal {
        Layout storage $ = _layout();
        uint32 next = $.epoch + 1;
        $.epoch = next;
        emit AllSessionsRevoked(next);
    }

    function _grant(SessionSpec memory spec, bool checkNonce, uint64 signedNonce) internal {
        _checkSpec(spec);
        Layout storage $ = _layout();
        SignerSlot storage slot = $.signers[spec.signer];
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
        s.epoch = $.epoch;
        for (uint256 i = 0; i < spec.callPolicies.length; i++) {
            CallPolicy memory p = spec.callPolicies[i];
            StoredCallPolicy storage sp = s.callPolicies.push();
            sp.target = p.target;
            sp.selector = p.selector;
            sp.maxValuePerUse = p.maxValuePerUse;
            _storeLimit(sp.valueLimit, p.valueLimit);
            bytes32 key = _policyKey(p.target, p.selector);
            if (s.callPolicyOf[key] == 0) s.callPolicyOf[key] = i + 1;
            if (s.firstPolicyForTarget[p.target] == 0) s.firstPolicyForTarget[p.target] = i + 1;
            for (uint256 j = 0; j < p.constraints.length; j++) {
                ArgConstraint memory c = p.constraints[j];
                StoredConstraint storage sc = sp.constraints.push();
                sc.condition = c.condition;
                sc.argType = c.argType;
                sc.argSize = c.argSize;
                sc.index = c.index;
                sc.refValue = c.refValue;
                _storeLimit(sc.limit, c.limit);
            }
        }
        for (uint256 i = 0; i < spec.transferPolicies.length; i++) {
            TransferPolicy memory t = spec.transferPolicies[i];
            StoredTransferPolicy storage st = s.transferPolicies.push();
            st.target = t.target;
            st.maxValuePerUse = t.maxValuePerUse;
            _storeLimit(st.valueLimit, t.valueLimit);
            if (s.transferPolicyOf[t.target] == 0) s.transferPolicyOf[t.target] = i + 1;
        }
        s.gas.maxCostPerOp = spec.gas.maxCostPerOp;
        _storeLimit(s.gas.costLimit, spec.gas.costLimit);
        for (uint256 i = 0; i < spec.gas.paymasters.length; i++) {
            s.gas.paymasters.push(spec.gas.paymasters[i]);
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
                ArgConstraint memory c = p.constraints[j];
                if (c.condition > COND_LTE) revert InvalidSessionSpec("unknown condition");
                _checkLimit(c.limit, spec.period);
                _checkArgType(c);
            }
        }
        for (uint256 i = 0; i < spec.transferPolicies.length; i++) {
            _checkLimit(spec.transferPolicies[i].valueLimit, spec.period);
        }
        _checkLimit(spec.gas.costLimit, spec.period);
        for (uint256 i = 0; i < spec.gas.paymasters.length; i++) {
            if (spec.gas.paymasters[i] == address(0)) revert InvalidSessionSpec("paymaster is zero");
        }
    }

    function _checkArgType(ArgConstraint memory c) private pure {
        uint8 argType = c.argType;
        if (argType > ARG_BYTES) revert InvalidSessionSpec("unknown argument type");
        bool sized = argType == ARG_UINT || argType == ARG_INT || argType == ARG_BYTES;
        if (sized ? (c.argSize == 0 || c.argSize > 32) : c.argSize != 0) {
            revert InvalidSessionSpec("bad argument size");
        }
        if (!_canonical(argType, c.argSize, c.refValue)) revert InvalidSessionSpec("refValue does not fit its type");
        if (argType == ARG_INT && c.limit.kind != LIMIT_NONE) revert InvalidSessionSpec("limit on a signed argument");
    }

    function _checkLimit(Limit memory l, uint48 period) private pure {
        if (l.kind > LIMIT_ALLOWANCE) revert InvalidSessionSpec("unknown limit kind");
        if (l.kind == LIMIT_ALLOWANCE && period == 0) revert InvalidSessionSpec("allowance without period");
    }

    // ---------------------------------------------------------------- session validation

    /// What one op's validation consumed so far (the SessionUsed event's payload). The array
    /// grows by doubling, so its memory follows the consumptions that happen, not the spec.
    struct Tally {
        Consumption[] items;
        uint256 n;
        uint48 periodIndex;
    }

    function _useSession(PackedUserOperation calldata userOp, address signer, uint48 periodIndex)
        internal
        returns (uint256)
    {
        Layout storage $ = _layout();
        SignerSlot storage slot = $.signers[signer];
        Session storage s = slot.sessions[slot.generation];
        uint8 status = s.status;
        if (status == STATUS_NONE) revert SessionUnknown(signer);
        if (status == STATUS_REVOKED || s.epoch != $.epoch) revert SessionIsRevoked(signer);

        (uint48 validAfter, uint48 validUntil) = _periodWindow(s, signer, periodIndex);

        uint32 count = s.usageCount + 1;
        uint32 usageLimit = s.usageLimit;
        if (usageLimit != 0 && count > usageLimit) revert SessionUsageLimitReached(signer, usageLimit);
        s.usageCount = count;

        Tally memory t = Tally(new Consumption[](2), 0, periodIndex);
        _checkGas(s, userOp, t);

        bytes calldata callData = userOp.callData;
        bytes4 selector = callData.length >= 4 ? bytes4(callData[:4]) : bytes4(0);
        if (selector == this.execute.selector) {
            (address target, uint256 value, bytes memory data) = abi.decode(callData[4:], (address, uint256, bytes));
            _checkCall(s, 0, target, value, data, t);
        } else if (selector == this.executeBatch.selector) {
            Call[] memory calls = abi.decode(callData[4:], (Call[]));
            if (calls.length > MAX_SESSION_CALLS) revert SessionTooManyCalls(calls.length, MAX_SESSION_CALLS);
            for (uint256 i = 0; i < calls.length; i++) {
                _checkCall(s, i, calls[i].target, calls[i].value, calls[i].data, t);
            }
        } else {
            revert SessionCallNotAllowed(selector);
        }
        Consumption[] memory consumed = t.items;
        uint256 n = t.n;
        assembly ("memory-safe") {
            mstore(consumed, n)
        }
        emit SessionUsed(signer, periodIndex, count, consumed);
        return (uint256(validUntil) << 160) | (uint256(validAfter) << 208);
    }

    /// The most the EntryPoint may charge for `op` (its prefund), saturating at 2^256-1.
    function _maxCost(PackedUserOperation calldata op) internal pure returns (uint256) {
        uint256 limits = uint256(op.accountGasLimits);
        uint256 sum = (limits >> 128) + uint128(limits);
        bytes calldata pmd = op.paymasterAndData;
        if (pmd.length >= 52) sum += uint256(uint128(bytes16(pmd[20:36]))) + uint256(uint128(bytes16(pmd[36:52])));
        uint256 pvg = op.preVerificationGas;
        if (pvg > type(uint256).max - sum) return type(uint256).max;
        sum += pvg;
        uint256 fee = uint128(uint256(op.gasFees));
        if (fee != 0 && sum > type(uint256).max / fee) return type(uint256).max;
        return sum * fee;
    }

    /// Gas rules (wildcard sessions included): the paymaster must be allowed, the op's maximum
    /// cost within maxCostPerOp, and an op the account pays for consumes that cost from costLimit.
    function _checkGas(Session storage s, PackedUserOperation calldata userOp, Tally memory t) internal {
        bytes calldata pmd = userOp.paymasterAndData;
        bool sponsored = pmd.length != 0;
        if (sponsored) {
            address paymaster = pmd.length >= 20 ? address(bytes20(pmd[:20])) : address(0);
            address[] storage allowed = s.gas.paymasters;
            uint256 count = allowed.length;
            uint256 i = 0;
            while (i < count && allowed[i] != paymaster) i++;
            if (i == count || paymaster == address(0)) revert SessionPaymasterNotAllowed(paymaster);
        }
        uint256 cost = _maxCost(userOp);
        uint256 max = s.gas.maxCostPerOp;
        if (cost > max) revert SessionGasCostExceedsPerOp(cost, max);
        if (!sponsored && _consume(s.gas.costLimit, cost, t.periodIndex, 0, SCOPE_GAS, 0, 0)) {
            _record(t, Consumption(SCOPE_GAS, 0, 0, cost));
        }
    }

    function _record(Tally memory t, Consumption memory c) private pure {
        uint256 n = t.n;
        if (n == t.items.length) {
            Consumption[] memory grown = new Consumption[](2 * n + 2);
            for (uint256 i = 0; i < n; i++) {
                grown[i] = t.items[i];
            }
            t.items = grown;
        }
        t.items[n] = c;
        t.n = n + 1;
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

    /// Targets no session may call, wildcard included: the EntryPoints (the account's deposit and
    /// stake, its nonces) except depositTo(this account), and this implementation.
    function _protected(address target, bytes memory data) internal view returns (bool) {
        if (
            target != ENTRY_POINT && target != ENTRY_POINT_V06 && target != ENTRY_POINT_V07
                && target != ENTRY_POINT_V08 && target != ENTRY_POINT_V09
        ) {
            return target == IMPLEMENTATION;
        }
        if (data.length != 36 || bytes4(data) != DEPOSIT_TO_SELECTOR) return true;
        address beneficiary;
        assembly ("memory-safe") {
            beneficiary := mload(add(data, 36))
        }
        return beneficiary != address(this);
    }

    function _policyKey(address target, bytes4 selector) private pure returns (bytes32 key) {
        assembly ("memory-safe") {
            mstore(0x00, target)
            mstore(0x20, selector)
            key := keccak256(0x00, 0x40)
        }
    }

    /// The governing call policy + 1 (0 = none): the lowest index among the policies whose target
    /// is `target` or any and whose selector is `selector` or any.
    function _findCallPolicy(Session storage s, address target, bytes4 selector) private view returns (uint256 best) {
        best = s.callPolicyOf[_policyKey(target, selector)];
        uint256 other = s.callPolicyOf[_policyKey(target, bytes4(0))];
        if (other != 0 && (best == 0 || other < best)) best = other;
        other = s.callPolicyOf[_policyKey(address(0), selector)];
        if (other != 0 && (best == 0 || other < best)) best = other;
        other = s.callPolicyOf[_policyKey(address(0), bytes4(0))];
        if (other != 0 && (best == 0 || other < best)) best = other;
    }

    function _checkCall(
        Session storage s,
        uint256 callIndex,
        address target,
        uint256 value,
        bytes memory data,
        Tally memory t
    ) internal {
        if (target == address(this)) revert SessionSelfCallNotAllowed(callIndex);
        if (_protected(target, data)) revert SessionProtectedTarget(callIndex, target);
        if (s.wildcard) return;

        if (data.length == 0) {
            uint256 found = s.transferPolicyOf[target];
            uint256 any = s.transferPolicyOf[address(0)];
            if (any != 0 && (found == 0 || any < found)) found = any;
            if (found == 0) revert SessionTransferNotAllowed(callIndex, target);
            uint256 i = found - 1;
            StoredTransferPolicy storage tp = s.transferPolicies[i];
            uint256 max = tp.maxValuePerUse;
            if (value > max) revert SessionTransferExceedsPerUse(callIndex, i, value, max);
            if (_consume(tp.valueLimit, value, t.periodIndex, callIndex, SCOPE_TRANSFER_VALUE, i, 0)) {
                _record(t, Consumption(SCOPE_TRANSFER_VALUE, uint32(i), 0, value));
            }
            return;
        }
        if (data.length < 4) revert SessionInvalidCallData(callIndex);

        bytes4 selector = bytes4(data);
        uint256 best = _findCallPolicy(s, target, selector);
        if (best == 0) {
            if (s.firstPolicyForTarget[target] != 0 || s.firstPolicyForTarget[address(0)] != 0) {
                revert SessionSelectorNotAllowed(callIndex, target, selector);
            }
            revert SessionTargetNotAllowed(callIndex, target);
        }
        uint256 pi = best - 1;
        StoredCallPolicy storage p = s.callPolicies[pi];
        uint256 maxValue = p.maxValuePerUse;
        if (value > maxValue) revert SessionValueExceedsPerUse(callIndex, pi, value, maxValue);
        if (_consume(p.valueLimit, value, t.periodIndex, callIndex, SCOPE_CALL_VALUE, pi, 0)) {
            _record(t, Consumption(SCOPE_CALL_VALUE, uint32(pi), 0, value));
        }
        uint256 constraints = p.constraints.length;
        for (uint256 j = 0; j < constraints; j++) {
            StoredConstraint storage c = p.constraints[j];
            uint256 wordIndex = c.index;
            uint256 offset = 4 + wordIndex * 32;
            if (data.length < offset + 32) revert SessionArgOutOfBounds(callIndex, pi, j, wordIndex);
            bytes32 word;
            assembly ("memory-safe") {
                word := mload(add(add(data, 32), offset))
            }
            uint8 argType = c.argType;
            if (!_canonical(argType, c.argSize, word)) {
                revert SessionArgNotCanonical(callIndex, pi, j, argType, word);
            }
            uint8 condition = c.condition;
            bytes32 ref = c.refValue;
            if (!_compare(condition, argType == ARG_INT, word, ref)) {
                revert SessionArgConstraintFailed(callIndex, pi, j, condition, word, ref);
            }
            if (_consume(c.limit, uint256(word), t.periodIndex, callIndex, SCOPE_CALL_ARG, pi, j)) {
                _record(t, Consumption(SCOPE_CALL_ARG, uint32(pi), uint32(j), uint256(word)));
            }
        }
    }

    /// Whether `word` is the canonical ABI encoding of a value of the constraint's type.
    function _canonical(uint8 argType, uint8 argSize, bytes32 word) internal pure returns (bool ok) {
        uint256 w = uint256(word);
        if (argType == ARG_WORD) return true;
        if (argType == ARG_ADDRESS) return w >> 160 == 0;
        if (argType == ARG_BOOL) return w <= 1;
        if (argSize >= 32) return true;
        uint256 bits = 8 * uint256(argSize);
        if (argType == ARG_UINT) return w >> bits == 0;
        if (argType == ARG_BYTES) return w << bits == 0;
        // ARG_INT: the word equals its low argSize bytes sign-extended
        assembly ("memory-safe") {
            ok := eq(signextend(sub(argSize, 1), w), w)
        }
    }

    function _compare(uint8 condition, bool signed, bytes32 word, bytes32 ref) private pure returns (bool) {
        if (condition == COND_EQ) return word == ref;
        if (condition == COND_NEQ) return word != ref;
        if (signed) {
            int256 x = int256(uint256(word));
            int256 y = int256(uint256(ref));
            if (condition == COND_GT) return x > y;
            if (condition == COND_GTE) return x >= y;
            if (condition == COND_LT) return x < y;
            return x <= y;
        }
        uint256 a = uint256(word);
        uint256 b = uint256(ref);
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

    /// The digest the owner signs to enable `spec` with grant nonce `nonce` (mode 0x02), in the
    /// current epoch (an op carrying a 7702 authorization starts the next one first).
    function enableDigest(SessionSpec memory spec, uint64 nonce) public view returns (bytes32) {
        return keccak256(
            abi.encodePacked(hex"1901", domainSeparator(), SessionSpecHash.hashEnable(spec, nonce, _layout().epoch))
        );
    }

    function grantNonce(address signer) external view returns (uint64) {
        return _layout().signers[signer].nonce;
    }

    function epoch() external view returns (uint32) {
        return _layout().epoch;
    }

    /// The signer's current session; status REVOKED also for a session of an earlier epoch.
    function getSession(address signer) external view returns (SessionInfo memory info) {
        Layout storage $ = _layout();
        SignerSlot storage slot = $.signers[signer];
        Session storage s = slot.sessions[slot.generation];
        info.status = s.status == STATUS_ACTIVE && s.epoch != $.epoch ? STATUS_REVOKED : s.status;
        info.grantNonce = slot.nonce;
        info.usageCount = s.usageCount;
        info.epoch = $.epoch;
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
                p.constraints[j] = ArgConstraint(
                    sc.condition, sc.argType, sc.argSize, sc.index, sc.refValue, Limit(sc.limit.kind, sc.limit.amount)
                );
            }
        }
        spec.transferPolicies = new TransferPolicy[](s.transferPolicies.length);
        for (uint256 i = 0; i < s.transferPolicies.length; i++) {
            StoredTransferPolicy storage st = s.transferPolicies[i];
            spec.transferPolicies[i] =
                TransferPolicy(st.target, st.maxValuePerUse, Limit(st.valueLimit.kind, st.valueLimit.amount));
        }
        spec.gas = GasPolicy(s.gas.maxCostPerOp, Limit(s.gas.costLimit.kind, s.gas.costLimit.amount), s.gas.paymasters);
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
        u.gasCost = LimitUsage(s.gas.costLimit.periodIndex, s.gas.costLimit.used);
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
        else if (scope == SCOPE_GAS) l = s.gas.costLimit;
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
