// Builders for every policy SessionAccount enforces: call and transfer policies, ERC-20 amounts,
// argument constraints (by word index or by the function's argument name), per-use values,
// cumulative limits (lifetime, or allowances that refill every period), the time window, the
// usage count and the wildcard flag. They only build plain SessionSpec values (spec.ts).
import {
  getAddress,
  isAddress,
  numberToHex,
  pad,
  toFunctionSelector,
  type AbiFunction,
  type Address,
  type Hex,
} from "viem";
import {
  ANY_SELECTOR,
  ArgType,
  Condition,
  LimitKind,
  ZERO_ADDRESS,
  type ArgConstraint,
  type CallPolicy,
  type ConditionName,
  type GasPolicy,
  type Limit,
  type SessionSpec,
  type TransferPolicy,
} from "./spec.js";

// ---------------------------------------------------------------- limits

export const noLimit = (): Limit => ({ kind: LimitKind.none, amount: 0n });
/** `amount` over the whole life of the session. */
export const lifetime = (amount: bigint): Limit => ({ kind: LimitKind.lifetime, amount });
/** `amount` per period of SessionSpec.period seconds; refills at every period (needs a period). */
export const allowance = (amount: bigint): Limit => ({ kind: LimitKind.allowance, amount });

// ---------------------------------------------------------------- argument constraints

/** A 32-byte ABI word from a uint, an address, a bool or up to 32 bytes (right-aligned). */
export function word(value: bigint | number | boolean | Hex): Hex {
  if (typeof value === "boolean") return numberToHex(value ? 1 : 0, { size: 32 });
  if (typeof value === "bigint" || typeof value === "number") return numberToHex(BigInt(value), { size: 32 });
  return pad(value, { size: 32 }).toLowerCase() as Hex;
}

type WordValue = bigint | number | boolean | Hex;

/** One rule on an argument: the condition, the value compared with, and an optional cumulative
 * limit on the argument's value (e.g. the ERC-20 amount). The argument is named by `arg(...)`. */
export type ArgRule = { condition: ConditionName; value: WordValue; limit?: Limit };

export const eq = (value: WordValue, limit?: Limit): ArgRule => ({ condition: "eq", value, limit });
export const neq = (value: WordValue, limit?: Limit): ArgRule => ({ condition: "neq", value, limit });
export const gt = (value: WordValue, limit?: Limit): ArgRule => ({ condition: "gt", value, limit });
export const gte = (value: WordValue, limit?: Limit): ArgRule => ({ condition: "gte", value, limit });
export const lt = (value: WordValue, limit?: Limit): ArgRule => ({ condition: "lt", value, limit });
export const lte = (value: WordValue, limit?: Limit): ArgRule => ({ condition: "lte", value, limit });
/** Any value (`word <= 2^256-1`), only to put a cumulative limit on an argument. */
export const anyValue = (limit: Limit): ArgRule => ({ condition: "lte", value: 2n ** 256n - 1n, limit });

/** How the account reads an argument of Solidity type `type` (ArgConstraint.argType / argSize): a
 * word that is not the canonical encoding of that type is refused, and the bundler prints the
 * value as that type (an address checksummed, not as a number). */
export function argTypeOf(type: string): { argType: number; argSize: number } {
  if (type === "address") return { argType: ArgType.address, argSize: 0 };
  if (type === "bool") return { argType: ArgType.bool, argSize: 0 };
  const m = /^(uint|int|bytes)(\d*)$/.exec(type);
  if (m && m[1] === "bytes" && m[2]) return { argType: ArgType.bytes, argSize: Number(m[2]) };
  if (m && m[1] !== "bytes") return { argType: ArgType[m[1] as "uint" | "int"], argSize: Number(m[2] || 256) / 8 };
  return { argType: ArgType.word, argSize: 0 };
}

/** A constraint on ABI word `index` after the selector (word 0 = first argument of a static
 * function), read as a whole word unless `type` (a Solidity type name) is given. */
export function argConstraint(index: number, rule: ArgRule, type?: string): ArgConstraint {
  const typed = type ? argTypeOf(type) : { argType: ArgType.word, argSize: 0 };
  return {
    condition: Condition[rule.condition],
    ...typed,
    index,
    refValue: word(rule.value),
    limit: rule.limit ?? noLimit(),
  };
}

const STATIC_ONE_WORD = /^(address|bool|u?int\d*|bytes([1-9]|[12]\d|3[0-2]))$/;

/** The ABI word index of argument `name` of `fn`: the head slot of that argument. Only
 * elementary static arguments can be constrained (a dynamic one's head is an offset). */
export function argIndex(fn: AbiFunction, name: string | number): number {
  return argSlot(fn, name).index;
}

function argSlot(fn: AbiFunction, name: string | number): { index: number; type: string } {
  let index = 0;
  for (let i = 0; i < fn.inputs.length; i++) {
    const input = fn.inputs[i]!;
    const isTarget = typeof name === "number" ? i === name : input.name === name;
    const oneWord = STATIC_ONE_WORD.test(input.type);
    if (isTarget) {
      if (!oneWord) throw new Error(`argument ${String(name)} of ${fn.name} is ${input.type}: only elementary static arguments can be constrained`);
      return { index, type: input.type };
    }
    // dynamic types take one head word (the offset); static tuples/arrays take more: refuse them
    const dynamic = input.type === "bytes" || input.type === "string" || input.type.endsWith("[]");
    if (!oneWord && !dynamic) throw new Error(`${fn.name}: argument ${input.name || i} (${input.type}) spans several words; give word indices`);
    index += 1;
  }
  throw new Error(`${fn.name} has no argument ${String(name)}`);
}

// ---------------------------------------------------------------- policies

const ERC20_TRANSFER: AbiFunction = {
  type: "function",
  name: "transfer",
  stateMutability: "nonpayable",
  inputs: [
    { name: "to", type: "address" },
    { name: "amount", type: "uint256" },
  ],
  outputs: [{ name: "", type: "bool" }],
};
const ERC20_APPROVE: AbiFunction = { ...ERC20_TRANSFER, name: "approve", inputs: [
  { name: "spender", type: "address" },
  { name: "amount", type: "uint256" },
] };

export type CallPolicyInput = {
  /** contract called; omitted = any target */
  target?: Address;
  /** the function: an ABI item (lets `args` name its arguments), a signature "transfer(address,uint256)" or a 4-byte selector; omitted = any */
  function?: AbiFunction | string | Hex;
  /** wei one call may send (default 0: no ETH) */
  maxValuePerUse?: bigint;
  /** cumulative wei over all calls of this policy */
  valueLimit?: Limit;
  /** rules on arguments: by name or position when `function` is an ABI item, else by word index */
  args?: Record<string | number, ArgRule | ArgRule[]>;
};

function selectorOf(f: AbiFunction | string | Hex | undefined): Hex {
  if (f === undefined) return ANY_SELECTOR;
  if (typeof f === "string") return /^0x[0-9a-fA-F]{8}$/.test(f) ? (f.toLowerCase() as Hex) : toFunctionSelector(f);
  return toFunctionSelector(f);
}

/** A policy for calls with calldata: target, function, value and argument rules. */
export function callPolicy(input: CallPolicyInput): CallPolicy & { kind: "call" } {
  const fn = typeof input.function === "object" ? input.function : undefined;
  const constraints: ArgConstraint[] = [];
  for (const [key, rules] of Object.entries(input.args ?? {})) {
    const position = /^\d+$/.test(key) ? Number(key) : key;
    const slot = fn ? argSlot(fn, position) : typeof position === "number" ? { index: position, type: undefined } : undefined;
    if (!slot) throw new Error(`argument "${key}" needs the function's ABI item to be found by name`);
    for (const rule of Array.isArray(rules) ? rules : [rules]) constraints.push(argConstraint(slot.index, rule, slot.type));
  }
  return {
    kind: "call",
    target: input.target ? getAddress(input.target) : ZERO_ADDRESS,
    selector: selectorOf(input.function),
    maxValuePerUse: input.maxValuePerUse ?? 0n,
    valueLimit: input.valueLimit ?? noLimit(),
    constraints,
  };
}

/** Plain ETH transfers (empty calldata) to `target` (omitted = any recipient). */
export function transferPolicy(input: { target?: Address; maxValuePerUse: bigint; valueLimit?: Limit }): TransferPolicy & { kind: "transfer" } {
  return {
    kind: "transfer",
    target: input.target ? getAddress(input.target) : ZERO_ADDRESS,
    maxValuePerUse: input.maxValuePerUse,
    valueLimit: input.valueLimit ?? noLimit(),
  };
}

/** ERC-20 `transfer(to, amount)` on `token`: optionally only to `to`, at most `maxPerTransfer`
 * per call, and a cumulative `limit` on the amount (lifetime or allowance). */
export function erc20TransferPolicy(input: {
  token: Address;
  to?: Address;
  maxPerTransfer?: bigint;
  limit?: Limit;
}): CallPolicy & { kind: "call" } {
  const amountRule = input.maxPerTransfer !== undefined ? lte(input.maxPerTransfer, input.limit) : input.limit ? anyValue(input.limit) : undefined;
  const args: Record<string, ArgRule> = {};
  if (input.to) args.to = eq(getAddress(input.to));
  if (amountRule) args.amount = amountRule;
  return callPolicy({ target: input.token, function: ERC20_TRANSFER, args });
}

/** ERC-20 `approve(spender, amount)` on `token` for one spender, with an amount cap. */
export function erc20ApprovePolicy(input: { token: Address; spender: Address; maxAmount?: bigint; limit?: Limit }) {
  const args: Record<string, ArgRule> = { spender: eq(getAddress(input.spender)) };
  if (input.maxAmount !== undefined) args.amount = lte(input.maxAmount, input.limit);
  return callPolicy({ target: input.token, function: ERC20_APPROVE, args });
}

// ---------------------------------------------------------------- the spec

export type Policy = (CallPolicy & { kind: "call" }) | (TransferPolicy & { kind: "transfer" });

export type SessionInput = {
  /** the session key's address */
  signer: Address;
  /** unix seconds; default 0 (valid at once) */
  validAfter?: number;
  /** unix seconds; 0 / omitted = no expiry */
  validUntil?: number;
  /** allowance period in seconds (needed by `allowance(...)` limits); periods start at validAfter */
  period?: number;
  /** most UserOperations the key may send; 0 / omitted = unlimited */
  usageLimit?: number;
  /** any call or transfer (never to the account itself); time window and usageLimit still apply */
  wildcard?: boolean;
  policies?: Policy[];
  /** what the session may spend on gas; default DEFAULT_GAS_POLICY */
  gas?: GasPolicy;
};

/** One op may cost (gas limits x maxFeePerGas) at most 0.1 ETH, 1 ETH over the session's life;
 * no paymaster. (The contract's own zero GasPolicy allows no gas at all.) */
export const DEFAULT_GAS_POLICY: GasPolicy = {
  maxCostPerOp: 10n ** 17n,
  costLimit: { kind: LimitKind.lifetime, amount: 10n ** 18n },
  paymasters: [],
};

/** A SessionSpec from policies, checked the way grantSession checks it. */
export function sessionSpec(input: SessionInput): SessionSpec {
  if (!isAddress(input.signer)) throw new Error(`signer ${input.signer} is not an address`);
  const callPolicies: CallPolicy[] = [];
  const transferPolicies: TransferPolicy[] = [];
  for (const p of input.policies ?? []) {
    const { kind, ...rest } = p;
    if (kind === "call") callPolicies.push(rest as CallPolicy);
    else transferPolicies.push(rest as TransferPolicy);
  }
  const spec: SessionSpec = {
    signer: getAddress(input.signer),
    validAfter: input.validAfter ?? 0,
    validUntil: input.validUntil ?? 0,
    period: input.period ?? 0,
    wildcard: input.wildcard ?? false,
    usageLimit: input.usageLimit ?? 0,
    callPolicies,
    transferPolicies,
    gas: input.gas ?? DEFAULT_GAS_POLICY,
  };
  checkSpec(spec);
  return spec;
}

/** The grant-time checks of the contract (InvalidSessionSpec), before anything is signed. */
export function checkSpec(spec: SessionSpec): void {
  if (spec.signer === ZERO_ADDRESS) throw new Error("InvalidSessionSpec: signer is zero");
  if (spec.validUntil !== 0 && spec.validUntil < spec.validAfter) throw new Error("InvalidSessionSpec: validUntil before validAfter");
  const limits = [
    ...spec.callPolicies.flatMap((p) => [p.valueLimit, ...p.constraints.map((c) => c.limit)]),
    ...spec.transferPolicies.map((t) => t.valueLimit),
  ];
  for (const l of limits) {
    if (l.kind > LimitKind.allowance) throw new Error("InvalidSessionSpec: unknown limit kind");
    if (l.kind === LimitKind.allowance && spec.period === 0) throw new Error("InvalidSessionSpec: allowance without period");
  }
}

/** validUntil `seconds` from `now` (unix seconds; default: the local clock). */
export function expiresIn(seconds: number, now: number = Math.floor(Date.now() / 1000)): number {
  return now + seconds;
}
