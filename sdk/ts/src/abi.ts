// ABI of SessionAccount and SessionAccountFactory as far as clients need it. Every function that
// takes or returns a SessionSpec uses SESSION_SPEC_ABI from spec.ts (the one definition).
import { parseAbi, type Abi, type AbiParameter } from "viem";
import { SESSION_SPEC_ABI } from "./spec.js";

const address = (name: string): AbiParameter => ({ name, type: "address" });
const uint = (bits: number, name: string): AbiParameter => ({ name, type: `uint${bits}` });
const named = (p: AbiParameter, name: string): AbiParameter => ({ ...p, name });

const CALL_TUPLE: AbiParameter = {
  name: "calls",
  type: "tuple[]",
  internalType: "struct Call[]",
  components: [address("target"), uint(256, "value"), { name: "data", type: "bytes" }],
};

const SESSION_INFO: AbiParameter = {
  name: "info",
  type: "tuple",
  internalType: "struct SessionAccount.SessionInfo",
  components: [SESSION_SPEC_ABI, uint(8, "status"), uint(64, "grantNonce"), uint(32, "usageCount"), uint(32, "epoch")],
};

const fn = (
  name: string,
  inputs: AbiParameter[],
  outputs: AbiParameter[] = [],
  stateMutability: "view" | "pure" | "nonpayable" = "nonpayable",
) => ({ type: "function", name, inputs, outputs, stateMutability }) as const;

const SESSION_ACCOUNT_ERRORS = parseAbi([
  "error NotFromEntryPoint(address caller)",
  "error NotAuthorized(address caller)",
  "error InitializeOnlyDuringConstruction()",
  "error InvalidOwner()",
  "error InvalidSignatureFormat()",
  "error InvalidSessionSpec(string reason)",
  "error SessionEnableNonceMismatch(address signer, uint64 signed, uint64 current)",
  "error SessionUnknown(address signer)",
  "error SessionIsRevoked(address signer)",
  "error SessionPeriodOutsideWindow(address signer, uint48 periodIndex)",
  "error SessionUsageLimitReached(address signer, uint32 usageLimit)",
  "error SessionCallNotAllowed(bytes4 selector)",
  "error SessionSelfCallNotAllowed(uint256 callIndex)",
  "error SessionProtectedTarget(uint256 callIndex, address target)",
  "error SessionTooManyCalls(uint256 calls, uint256 max)",
  "error SessionPaymasterNotAllowed(address paymaster)",
  "error SessionGasCostExceedsPerOp(uint256 cost, uint256 max)",
  "error SessionDelegationNotAllowed()",
  "error SessionArgNotCanonical(uint256 callIndex, uint256 policyIndex, uint256 constraintIndex, uint8 argType, bytes32 actual)",
  "error SessionInvalidCallData(uint256 callIndex)",
  "error SessionTransferNotAllowed(uint256 callIndex, address target)",
  "error SessionTransferExceedsPerUse(uint256 callIndex, uint256 policyIndex, uint256 value, uint256 max)",
  "error SessionTargetNotAllowed(uint256 callIndex, address target)",
  "error SessionSelectorNotAllowed(uint256 callIndex, address target, bytes4 selector)",
  "error SessionValueExceedsPerUse(uint256 callIndex, uint256 policyIndex, uint256 value, uint256 max)",
  "error SessionArgOutOfBounds(uint256 callIndex, uint256 policyIndex, uint256 constraintIndex, uint256 wordIndex)",
  "error SessionArgConstraintFailed(uint256 callIndex, uint256 policyIndex, uint256 constraintIndex, uint8 condition, bytes32 actual, bytes32 refValue)",
  "error SessionPeriodExpired(uint48 periodIndex, uint48 counterPeriodIndex)",
  "error SessionCumulativeLimitExceeded(uint256 callIndex, uint8 scope, uint256 policyIndex, uint256 constraintIndex, uint256 used, uint256 amount, uint256 limit)",
]);

export const sessionAccountAbi = [
  fn("execute", [address("target"), uint(256, "value"), { name: "data", type: "bytes" }]),
  fn("executeBatch", [CALL_TUPLE]),
  fn("grantSession", [SESSION_SPEC_ABI]),
  fn("revokeSession", [address("signer")]),
  fn("revokeAllSessions", []),
  fn("epoch", [], [uint(32, "")], "view"),
  fn("owner", [], [address("")], "view"),
  fn("entryPoint", [], [address("")], "view"),
  fn("grantNonce", [address("signer")], [uint(64, "")], "view"),
  fn("getSession", [address("signer")], [SESSION_INFO], "view"),
  fn("enableDigest", [SESSION_SPEC_ABI, uint(64, "nonce")], [{ name: "", type: "bytes32" }], "view"),
  fn("specHash", [SESSION_SPEC_ABI], [{ name: "", type: "bytes32" }], "pure"),
  fn("domainSeparator", [], [{ name: "", type: "bytes32" }], "view"),
  fn("isValidSignature", [{ name: "hash", type: "bytes32" }, { name: "signature", type: "bytes" }], [{ name: "", type: "bytes4" }], "view"),
  fn(
    "eip712Domain",
    [],
    [
      { name: "fields", type: "bytes1" },
      { name: "name", type: "string" },
      { name: "version", type: "string" },
      { name: "chainId", type: "uint256" },
      { name: "verifyingContract", type: "address" },
      { name: "salt", type: "bytes32" },
      { name: "extensions", type: "uint256[]" },
    ],
    "view",
  ),
  fn(
    "remaining",
    [address("signer"), uint(8, "scope"), uint(256, "policyIndex"), uint(256, "constraintIndex"), uint(48, "periodIndex")],
    [uint(256, "")],
    "view",
  ),
  fn("remainingUses", [address("signer")], [uint(32, "")], "view"),
  fn("currentPeriod", [address("signer")], [uint(48, "")], "view"),
  fn("periodBounds", [address("signer"), uint(48, "periodIndex")], [uint(48, ""), uint(48, "")], "view"),
  {
    type: "event",
    name: "SessionGranted",
    inputs: [
      { ...address("signer"), indexed: true },
      uint(64, "nonce"),
      { name: "specHash", type: "bytes32" },
      named(SESSION_SPEC_ABI, "spec"),
    ],
    anonymous: false,
  },
  {
    type: "event",
    name: "SessionRevoked",
    inputs: [{ ...address("signer"), indexed: true }, uint(64, "nonce")],
    anonymous: false,
  },
  ...SESSION_ACCOUNT_ERRORS,
] as const satisfies Abi;

export const sessionAccountFactoryAbi = parseAbi([
  "function createAccount(address owner, uint256 salt) returns (address account)",
  "function getAddress(address owner, uint256 salt) view returns (address)",
  "function ACCOUNT_IMPLEMENTATION() view returns (address)",
]);
