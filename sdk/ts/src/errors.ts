// Typed decoding of the bundler's session refusals (JSON-RPC error.data) and of SessionAccount's
// custom errors in revert data, so an app can show which rule an op broke and what is left.
import { decodeErrorResult, type Address, type Hex } from "viem";
import { sessionAccountAbi } from "./abi.js";

export type SessionRefusal = {
  /** JSON-RPC error code: -32500 policy, -32503 time window, -32507 signature */
  code: number;
  message: string;
  /** the contract's custom error name (SessionCumulativeLimitExceeded, SessionTargetNotAllowed, …) or a time rule */
  rule: string;
  account?: Address;
  sessionKey?: Address;
  entryPoint?: Address;
  callIndex?: number;
  policyType?: "call" | "transfer";
  policyIndex?: number;
  constraintIndex?: number;
  /** the function argument a constraint is on, when the bundler knows the function */
  argument?: string;
  scope?: "callValue" | "callArgument" | "transferValue";
  limitKind?: "lifetime" | "allowance";
  periodIndex?: number;
  limit?: bigint;
  used?: bigint;
  pending?: bigint;
  inOp?: bigint;
  requested?: bigint;
  remaining?: bigint;
  /** error.data exactly as the bundler sent it */
  data: Record<string, unknown>;
};

const AMOUNTS = ["limit", "used", "pending", "inOp", "requested", "remaining", "value", "max"] as const;

type RpcErrorLike = { code?: unknown; message?: unknown; shortMessage?: unknown; details?: unknown; data?: unknown; cause?: unknown };

/** The session refusal inside any error viem (or permissionless) throws, or a raw JSON-RPC error
 * object; undefined when the error is not a session refusal. */
export function parseSessionRefusal(error: unknown): SessionRefusal | undefined {
  let code: number | undefined;
  for (let e = error as RpcErrorLike | undefined, depth = 0; e && depth < 16; e = e.cause as RpcErrorLike | undefined, depth++) {
    if (typeof e.code === "number" && code === undefined) code = e.code;
    const data = e.data as Record<string, unknown> | undefined;
    if (data && typeof data === "object" && typeof data.rule === "string") {
      const message = String(e.details ?? e.message ?? "");
      return toRefusal(typeof e.code === "number" ? e.code : (code ?? 0), message, data);
    }
  }
  return undefined;
}

function toRefusal(code: number, message: string, data: Record<string, unknown>): SessionRefusal {
  const out: SessionRefusal = { code, message, rule: data.rule as string, data };
  for (const [k, v] of Object.entries(data)) {
    if ((AMOUNTS as readonly string[]).includes(k) && typeof v === "string") (out as Record<string, unknown>)[k] = BigInt(v);
    else if (k !== "rule" && !(k in out)) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

export type SessionAccountError = { name: string; args: readonly unknown[] };

/** A SessionAccount custom error from revert data (e.g. inside FailedOpWithRevert), or undefined. */
export function decodeSessionAccountError(data: Hex): SessionAccountError | undefined {
  try {
    const { errorName, args } = decodeErrorResult({ abi: sessionAccountAbi, data });
    return { name: errorName, args: args ?? [] };
  } catch {
    return undefined;
  }
}
