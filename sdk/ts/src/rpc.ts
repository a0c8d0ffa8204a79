// Readers of the bundler's session_* methods, with amounts as bigint. Use them on a viem
// bundler client (`getSession(bundlerClient, ...)`) or extend it: `bundlerClient.extend(sessionActions)`.
import { getAddress, type Address, type Client, type Hex } from "viem";
import { ArgType, Condition, LimitKind, normalizeSpec, type SessionSpec } from "./spec.js";

export type SessionLimitReport = {
  scope: "callValue" | "callArgument" | "transferValue";
  policyType: "call" | "transfer";
  policyIndex: number;
  constraintIndex?: number;
  description: string;
  kind: "lifetime" | "allowance";
  limit: bigint;
  used: bigint;
  pending: bigint;
  remaining: bigint;
  periodIndex?: number;
  periodStart?: number;
  periodEnd?: number;
};

export type BundlerSessionView = {
  account: Address;
  sessionKey: Address;
  entryPoint: Address;
  accountType: string;
  blockNumber: bigint;
  now: number;
  status: "active" | "notYetValid" | "expired" | "revoked" | "unknown";
  grantNonce: number;
  spec: SessionSpec | null;
  uses: { limit: number | null; used: number; pending: number; remaining: number | null };
  currentPeriod: number;
  limits: SessionLimitReport[];
  pendingOps: Hex[];
  /** the answer exactly as sent */
  raw: Record<string, unknown>;
};

const big = (v: unknown): bigint => BigInt(v as string);

/** The bundler's spec JSON (condition / kind as names, amounts as hex) as a SessionSpec. */
export function specFromBundlerJson(s: Record<string, any>): SessionSpec {
  const limit = (l: any) => ({ kind: typeof l.kind === "string" ? LimitKind[l.kind as keyof typeof LimitKind] : Number(l.kind), amount: big(l.amount) });
  return normalizeSpec({
    signer: getAddress(s.signer),
    validAfter: Number(s.validAfter),
    validUntil: Number(s.validUntil),
    period: Number(s.period),
    wildcard: Boolean(s.wildcard),
    usageLimit: Number(s.usageLimit),
    callPolicies: s.callPolicies.map((p: any) => ({
      target: getAddress(p.target === "any" ? "0x0000000000000000000000000000000000000000" : p.target),
      selector: p.selector,
      maxValuePerUse: big(p.maxValuePerUse),
      valueLimit: limit(p.valueLimit),
      constraints: p.constraints.map((c: any) => ({
        condition: typeof c.condition === "string" ? Condition[c.condition as keyof typeof Condition] : Number(c.condition),
        ...argTypeFromName(c.type),
        index: Number(c.index),
        refValue: c.refValue,
        limit: limit(c.limit),
      })),
    })),
    transferPolicies: s.transferPolicies.map((t: any) => ({
      target: getAddress(t.target === "any" ? "0x0000000000000000000000000000000000000000" : t.target),
      maxValuePerUse: big(t.maxValuePerUse),
      valueLimit: limit(t.valueLimit),
    })),
    gas: {
      maxCostPerOp: big(s.gas.maxCostPerOp),
      costLimit: limit(s.gas.costLimit),
      paymasters: s.gas.paymasters.map((a: string) => getAddress(a)),
    },
  } as SessionSpec);
}

/** The bundler's constraint type name ("word", "address", "bool", "uint96", "int24", "bytes4"). */
function argTypeFromName(name: unknown): { argType: number; argSize: number } {
  const n = typeof name === "string" ? name : "word";
  const m = /^(uint|int|bytes)(\d+)$/.exec(n);
  if (m) return { argType: ArgType[m[1] as "uint" | "int" | "bytes"], argSize: m[1] === "bytes" ? Number(m[2]) : Number(m[2]) / 8 };
  return { argType: ArgType[n as "word" | "address" | "bool"] ?? 0, argSize: 0 };
}

type RequestClient = Pick<Client, "request">;

export async function getSession(
  client: RequestClient,
  args: { account: Address; sessionKey: Address; entryPoint?: Address },
): Promise<BundlerSessionView> {
  const params: unknown[] = [args.account, args.sessionKey];
  if (args.entryPoint) params.push(args.entryPoint);
  const raw = (await (client.request as (a: { method: string; params: unknown[] }) => Promise<unknown>)({
    method: "session_getSession",
    params,
  })) as Record<string, any>;
  return {
    account: getAddress(raw.account),
    sessionKey: getAddress(raw.sessionKey),
    entryPoint: getAddress(raw.entryPoint),
    accountType: raw.accountType,
    blockNumber: big(raw.blockNumber),
    now: Number(raw.now),
    status: raw.status,
    grantNonce: Number(raw.grantNonce),
    spec: raw.spec ? specFromBundlerJson(raw.spec) : null,
    uses: raw.uses,
    currentPeriod: Number(raw.currentPeriod ?? 0),
    limits: (raw.limits ?? []).map((l: any) => ({
      ...l,
      limit: big(l.limit),
      used: big(l.used),
      pending: big(l.pending),
      remaining: big(l.remaining),
    })),
    pendingOps: raw.pendingOps ?? [],
    raw,
  };
}

export type SessionActivityEntry = Record<string, unknown> & {
  userOpHash: Hex;
  status: "pending" | "submitted" | "mined" | "dropped";
  reason?: string;
  errorCode?: number;
};

export async function getSessionActivity(
  client: RequestClient,
  args: { account: Address; sessionKey: Address },
): Promise<SessionActivityEntry[]> {
  return (await (client.request as (a: { method: string; params: unknown[] }) => Promise<unknown>)({
    method: "session_getActivity",
    params: [args.account, args.sessionKey],
  })) as SessionActivityEntry[];
}

/** `bundlerClient.extend(sessionActions)` adds getSession / getSessionActivity. */
export function sessionActions(client: RequestClient) {
  return {
    getSession: (args: Parameters<typeof getSession>[1]) => getSession(client, args),
    getSessionActivity: (args: Parameters<typeof getSessionActivity>[1]) => getSessionActivity(client, args),
  };
}
