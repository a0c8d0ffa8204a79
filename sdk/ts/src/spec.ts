// The SessionSpec of contracts/SessionTypes.sol, defined ONCE here as EIP-712 struct types.
// Everything else is derived from SESSION_STRUCTS: the TypeScript types (through abitype), the
// ABI tuple used for grantSession / enable-mode signatures / getSession, and the EIP-712 types
// of the enable message. A change of the struct (a new field) is an edit of SESSION_STRUCTS plus
// the defaults in DEFAULTS below; keep field order identical to the Solidity struct.
import type { TypedDataToPrimitiveTypes } from "abitype";
import {
  decodeAbiParameters,
  encodeAbiParameters,
  hashStruct,
  hashTypedData,
  type AbiParameter,
  type Address,
  type Hex,
} from "viem";

export const SESSION_STRUCTS = {
  Limit: [
    { name: "kind", type: "uint8" },
    { name: "amount", type: "uint256" },
  ],
  ArgConstraint: [
    { name: "condition", type: "uint8" },
    { name: "argType", type: "uint8" },
    { name: "argSize", type: "uint8" },
    { name: "index", type: "uint32" },
    { name: "refValue", type: "bytes32" },
    { name: "limit", type: "Limit" },
  ],
  CallPolicy: [
    { name: "target", type: "address" },
    { name: "selector", type: "bytes4" },
    { name: "maxValuePerUse", type: "uint256" },
    { name: "valueLimit", type: "Limit" },
    { name: "constraints", type: "ArgConstraint[]" },
  ],
  TransferPolicy: [
    { name: "target", type: "address" },
    { name: "maxValuePerUse", type: "uint256" },
    { name: "valueLimit", type: "Limit" },
  ],
  GasPolicy: [
    { name: "maxCostPerOp", type: "uint256" },
    { name: "costLimit", type: "Limit" },
    { name: "paymasters", type: "address[]" },
  ],
  SessionSpec: [
    { name: "signer", type: "address" },
    { name: "validAfter", type: "uint48" },
    { name: "validUntil", type: "uint48" },
    { name: "period", type: "uint48" },
    { name: "wildcard", type: "bool" },
    { name: "usageLimit", type: "uint32" },
    { name: "callPolicies", type: "CallPolicy[]" },
    { name: "transferPolicies", type: "TransferPolicy[]" },
    { name: "gas", type: "GasPolicy" },
  ],
} as const;

/** EIP-712 types of the owner's enable-mode message `EnableSession(SessionSpec spec,uint64 nonce,uint32 epoch)`. */
export const ENABLE_SESSION_TYPES = {
  EnableSession: [
    { name: "spec", type: "SessionSpec" },
    { name: "nonce", type: "uint64" },
    { name: "epoch", type: "uint32" },
  ],
  ...SESSION_STRUCTS,
} as const;

export const DOMAIN_NAME = "SessionAccount";
export const DOMAIN_VERSION = "1";

type Structs = TypedDataToPrimitiveTypes<typeof SESSION_STRUCTS>;
export type Limit = Structs["Limit"];
export type ArgConstraint = Structs["ArgConstraint"];
export type CallPolicy = Structs["CallPolicy"];
export type TransferPolicy = Structs["TransferPolicy"];
export type GasPolicy = Structs["GasPolicy"];
export type SessionSpec = Structs["SessionSpec"];

// Limit.kind
export const LimitKind = { none: 0, lifetime: 1, allowance: 2 } as const;
export type LimitKindName = keyof typeof LimitKind;
// ArgConstraint.condition: `word <condition> refValue`, both read as uint256
export const Condition = { eq: 0, neq: 1, gt: 2, gte: 3, lt: 4, lte: 5 } as const;
export type ConditionName = keyof typeof Condition;
// scope of a cumulative limit (contract errors, SessionUsed events, remaining())
export const Scope = { callValue: 0, callArgument: 1, transferValue: 2, gasCost: 3 } as const;
// ArgConstraint.argType (argSize: bytes of uint/int/bytes types, else 0); a word that is not the
// canonical encoding of the type is refused
export const ArgType = { word: 0, address: 1, bool: 2, uint: 3, int: 4, bytes: 5 } as const;
export const SessionStatus = { none: 0, active: 1, revoked: 2 } as const;

export const ZERO_ADDRESS: Address = "0x0000000000000000000000000000000000000000";
export const ANY_SELECTOR: Hex = "0x00000000";
export const UINT48_MAX = 2 ** 48 - 1;

type StructName = keyof typeof SESSION_STRUCTS;

function abiParameter(type: string, name: string): AbiParameter {
  const isArray = type.endsWith("[]");
  const base = isArray ? type.slice(0, -2) : type;
  if (!(base in SESSION_STRUCTS)) return { name, type } as AbiParameter;
  const fields = SESSION_STRUCTS[base as StructName] as readonly { name: string; type: string }[];
  return {
    name,
    type: isArray ? "tuple[]" : "tuple",
    internalType: `struct ${base}${isArray ? "[]" : ""}`,
    components: fields.map((f) => abiParameter(f.type, f.name)),
  } as AbiParameter;
}

/** The ABI parameter of one SessionSpec tuple (named components, as in the contract ABI). */
export const SESSION_SPEC_ABI: AbiParameter = abiParameter("SessionSpec", "spec");

/** Solidity's canonical tuple type string, e.g. for selectors: `(address,uint48,...)`. */
export function canonicalType(p: AbiParameter): string {
  if (p.type.startsWith("tuple")) {
    const inner = (p as { components: readonly AbiParameter[] }).components.map(canonicalType).join(",");
    return `(${inner})${p.type.slice(5)}`;
  }
  return p.type;
}

/** ABI encoding of the spec as a single parameter (what follows grantSession's selector). */
export function encodeSpec(spec: SessionSpec): Hex {
  return encodeAbiParameters([SESSION_SPEC_ABI], [spec]);
}

export function decodeSpec(data: Hex): SessionSpec {
  const [spec] = decodeAbiParameters([SESSION_SPEC_ABI], data);
  return normalizeSpec(spec as SessionSpec);
}

/** viem decodes uint48/uint32/uint8 as numbers and addresses checksummed; this keeps a decoded
 * spec structurally equal to one built with the builders (plain numbers, bigint amounts). */
export function normalizeSpec(spec: SessionSpec): SessionSpec {
  const limit = (l: Limit): Limit => ({ kind: Number(l.kind), amount: BigInt(l.amount) });
  return {
    signer: spec.signer,
    validAfter: Number(spec.validAfter),
    validUntil: Number(spec.validUntil),
    period: Number(spec.period),
    wildcard: Boolean(spec.wildcard),
    usageLimit: Number(spec.usageLimit),
    callPolicies: spec.callPolicies.map((p) => ({
      target: p.target,
      selector: p.selector.toLowerCase() as Hex,
      maxValuePerUse: BigInt(p.maxValuePerUse),
      valueLimit: limit(p.valueLimit),
      constraints: p.constraints.map((c) => ({
        condition: Number(c.condition),
        argType: Number(c.argType),
        argSize: Number(c.argSize),
        index: Number(c.index),
        refValue: c.refValue.toLowerCase() as Hex,
        limit: limit(c.limit),
      })),
    })),
    transferPolicies: spec.transferPolicies.map((t) => ({
      target: t.target,
      maxValuePerUse: BigInt(t.maxValuePerUse),
      valueLimit: limit(t.valueLimit),
    })),
    gas: {
      maxCostPerOp: BigInt(spec.gas.maxCostPerOp),
      costLimit: limit(spec.gas.costLimit),
      paymasters: [...spec.gas.paymasters],
    },
  };
}

/** EIP-712 hashStruct(SessionSpec): the `specHash` of the SessionGranted event. */
export function specHash(spec: SessionSpec): Hex {
  return hashStruct({ data: spec, primaryType: "SessionSpec", types: SESSION_STRUCTS });
}

export type EnableTypedData = {
  domain: { name: string; version: string; chainId: number; verifyingContract: Address };
  types: typeof ENABLE_SESSION_TYPES;
  primaryType: "EnableSession";
  message: { spec: SessionSpec; nonce: bigint; epoch: number };
};

/** The typed data the owner signs for enable mode (any wallet's signTypedData / eth_signTypedData_v4).
 * `nonce` must be the account's grantNonce(spec.signer) (0 for a new account). */
export function enableTypedData(args: {
  spec: SessionSpec;
  nonce: bigint | number;
  account: Address;
  chainId: number;
  /** the account's epoch() (0 for a new account; +1 when the op carries an EIP-7702 authorization) */
  epoch?: number;
}): EnableTypedData {
  return {
    domain: { name: DOMAIN_NAME, version: DOMAIN_VERSION, chainId: args.chainId, verifyingContract: args.account },
    types: ENABLE_SESSION_TYPES,
    primaryType: "EnableSession",
    message: { spec: args.spec, nonce: BigInt(args.nonce), epoch: args.epoch ?? 0 },
  };
}

/** The digest of enableTypedData (equals the account's enableDigest(spec, nonce)). */
export function enableDigest(args: Parameters<typeof enableTypedData>[0]): Hex {
  return hashTypedData(enableTypedData(args));
}

/** The allowance period a session op signed at `timestamp` names (0 without period or before validAfter). */
export function periodIndexAt(spec: Pick<SessionSpec, "validAfter" | "period">, timestamp: number | bigint): number {
  const t = Number(timestamp);
  if (!spec.period || t < spec.validAfter) return 0;
  return Math.floor((t - spec.validAfter) / spec.period);
}

/** [validAfter, validUntil] of a session op naming `periodIndex`, as the contract computes it
 * (validUntil 0 = unbounded). Throws where the contract reverts SessionPeriodOutsideWindow. */
export function periodWindow(spec: SessionSpec, periodIndex: number): { validAfter: number; validUntil: number } {
  let lo = spec.validAfter;
  let hi = spec.validUntil || UINT48_MAX;
  if (spec.period === 0) {
    if (periodIndex !== 0) throw new Error("period index must be 0 for a session without period");
  } else {
    lo += periodIndex * spec.period;
    hi = Math.min(hi, lo + spec.period - 1);
  }
  if (lo > hi) throw new Error(`period ${periodIndex} lies outside the session window`);
  return { validAfter: lo, validUntil: hi === UINT48_MAX ? 0 : hi };
}
