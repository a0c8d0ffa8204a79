// One string an app hands to its backend: which account (and how it is deployed), the granted
// spec, and (for enable mode) the owner's signature. The JSON inside is the format the Python SDK
// reads too (sdk/python): uints wider than 48 bits are 0x-hex strings, the rest JSON numbers.
// The session key's private key is NOT included unless asked for (a backend normally holds its own).
import { getAddress, type Address, type Hex } from "viem";
import type { SessionEntryPointVersion, ToSessionAccountParameters } from "./account.js";
import { normalizeSpec, SESSION_STRUCTS, type SessionSpec } from "./spec.js";
import type { LocalAccount } from "viem";

export const SERIALIZED_PREFIX = "session1:";

export type SessionGrant = {
  chainId: number;
  entryPoint: SessionEntryPointVersion;
  account: Address;
  owner: Address;
  /** SessionAccountFactory and salt while the account may still be counterfactual */
  factory?: Address;
  salt?: bigint;
  /** EIP-7702: the implementation the owner EOA delegates to */
  eip7702Implementation?: Address;
  spec: SessionSpec;
  /** enable mode: the owner's EIP-712 signature and the grant nonce it names */
  enable?: { ownerSignature: Hex; nonce: bigint };
  /** only when the app generated the session key for the backend (serializeSession(..., { includePrivateKey })) */
  sessionPrivateKey?: Hex;
};

type Fields = readonly { name: string; type: string }[];
const structs = SESSION_STRUCTS as unknown as Record<string, Fields>;

function wide(type: string): boolean {
  const m = /^u?int(\d+)$/.exec(type);
  return m !== null && Number(m[1]) > 48;
}

/** A struct value as JSON-safe data, driven by SESSION_STRUCTS (so a new field needs no edit here). */
export function structToJson(type: string, value: unknown): unknown {
  if (type.endsWith("[]")) return (value as unknown[]).map((v) => structToJson(type.slice(0, -2), v));
  const fields = structs[type];
  if (fields) {
    const obj = value as Record<string, unknown>;
    return Object.fromEntries(fields.map((f) => [f.name, structToJson(f.type, obj[f.name])]));
  }
  if (wide(type)) return `0x${BigInt(value as bigint).toString(16)}`;
  if (/^u?int\d+$/.test(type)) return Number(value);
  return value;
}

export function structFromJson(type: string, value: unknown): unknown {
  if (type.endsWith("[]")) return (value as unknown[]).map((v) => structFromJson(type.slice(0, -2), v));
  const fields = structs[type];
  if (fields) {
    const obj = value as Record<string, unknown>;
    return Object.fromEntries(fields.map((f) => {
      if (!(f.name in obj)) throw new Error(`${type}.${f.name} is missing`);
      return [f.name, structFromJson(f.type, obj[f.name])];
    }));
  }
  if (wide(type)) return BigInt(value as string);
  if (/^u?int\d+$/.test(type)) return Number(value);
  if (type === "address") return getAddress(value as string);
  return value;
}

export const specToJson = (spec: SessionSpec) => structToJson("SessionSpec", spec) as Record<string, unknown>;
export const specFromJson = (json: unknown): SessionSpec => normalizeSpec(structFromJson("SessionSpec", json) as SessionSpec);

// base64url without Buffer, so the package runs in browsers too
function toBase64Url(text: string): string {
  let bin = "";
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): string {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

export function serializeSession(grant: SessionGrant, options: { includePrivateKey?: boolean } = {}): string {
  const json: Record<string, unknown> = {
    v: 1,
    chainId: grant.chainId,
    entryPoint: grant.entryPoint,
    account: getAddress(grant.account),
    owner: getAddress(grant.owner),
    spec: specToJson(grant.spec),
  };
  if (grant.factory) {
    json.factory = getAddress(grant.factory);
    json.salt = `0x${(grant.salt ?? 0n).toString(16)}`;
  }
  if (grant.eip7702Implementation) json.eip7702Implementation = getAddress(grant.eip7702Implementation);
  if (grant.enable) json.enable = { ownerSignature: grant.enable.ownerSignature, nonce: Number(grant.enable.nonce) };
  if (options.includePrivateKey) {
    if (!grant.sessionPrivateKey) throw new Error("includePrivateKey: the grant has no sessionPrivateKey");
    json.sessionPrivateKey = grant.sessionPrivateKey;
  }
  return SERIALIZED_PREFIX + toBase64Url(JSON.stringify(json));
}

export function deserializeSession(text: string): SessionGrant {
  if (!text.startsWith(SERIALIZED_PREFIX)) throw new Error(`not a serialized session (expected the prefix ${SERIALIZED_PREFIX})`);
  const json = JSON.parse(fromBase64Url(text.slice(SERIALIZED_PREFIX.length)));
  if (json.v !== 1) throw new Error(`unknown serialized session version ${json.v}`);
  const grant: SessionGrant = {
    chainId: Number(json.chainId),
    entryPoint: json.entryPoint,
    account: getAddress(json.account),
    owner: getAddress(json.owner),
    spec: specFromJson(json.spec),
  };
  if (json.factory) {
    grant.factory = getAddress(json.factory);
    grant.salt = BigInt(json.salt ?? 0);
  }
  if (json.eip7702Implementation) grant.eip7702Implementation = getAddress(json.eip7702Implementation);
  if (json.enable) grant.enable = { ownerSignature: json.enable.ownerSignature, nonce: BigInt(json.enable.nonce) };
  if (json.sessionPrivateKey) grant.sessionPrivateKey = json.sessionPrivateKey;
  return grant;
}

/** toSessionAccount parameters (session mode) for a grant and the session key that signs. */
export function sessionAccountParameters(
  grant: SessionGrant,
  signer: LocalAccount,
): Omit<ToSessionAccountParameters, "client"> {
  if (getAddress(signer.address) !== getAddress(grant.spec.signer)) {
    throw new Error(`the session key ${signer.address} is not the grant's signer ${grant.spec.signer}`);
  }
  return {
    entryPoint: grant.entryPoint,
    owner: grant.owner,
    address: grant.account,
    ...(grant.factory ? { factory: grant.factory, salt: grant.salt ?? 0n } : {}),
    ...(grant.eip7702Implementation ? { eip7702: { implementation: grant.eip7702Implementation } } : {}),
    session: { signer, spec: grant.spec, ...(grant.enable ? { enable: grant.enable } : {}) },
  };
}
