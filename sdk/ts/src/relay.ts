// A small client of the bundler's session relay (docs/relay.md): signed requests for a backend
// credential or an account owner, and the verification of the relay's signed webhooks.
import { type Address, type Hex, type LocalAccount, getAddress, recoverMessageAddress, sha256, toBytes } from "viem";

export const RELAY_SCHEME = "bundler-relay-v1";

/** The text a relay request (or webhook) signature covers: personal_sign of it. */
export function relayRequestMessage(method: string, path: string, timestamp: string, nonce: string, body: string): string {
  const digest = sha256(toBytes(body)).slice(2);
  return [RELAY_SCHEME, method.toUpperCase(), path, timestamp, nonce, digest].join("\n");
}

function randomNonce(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export type RelaySigner = Pick<LocalAccount, "address" | "signMessage">;

export type RelayClientOptions = {
  /** the bundler's URL (the relay is under /relay/v1) */
  url: string;
  /** the backend's own key (credential requests) or the account owner's key (owner requests) */
  signer: RelaySigner;
  /** set for a backend, after register() */
  credentialId?: string;
  /** set for an owner: the account whose on-chain owner signs */
  ownerAccount?: Address;
};

export class RelayError extends Error {
  constructor(readonly status: number, readonly code: string | number, message: string, readonly data?: unknown) {
    super(message);
  }
}

export type RelayCall = { to: Address; value?: Hex | number; data?: Hex };

export function createRelayClient(options: RelayClientOptions) {
  const base = options.url.replace(/\/$/, "");
  let credentialId = options.credentialId;

  async function request<T>(method: "GET" | "POST", path: string, payload?: unknown): Promise<{ status: number; body: T }> {
    const body = payload === undefined ? "" : JSON.stringify(payload);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const nonce = randomNonce();
    const signature = await options.signer.signMessage({ message: relayRequestMessage(method, path, timestamp, nonce, body) });
    const headers: Record<string, string> = {
      "Content-Type": "application/json", "X-Relay-Timestamp": timestamp, "X-Relay-Nonce": nonce,
      "X-Relay-Signature": signature,
    };
    if (credentialId) headers["X-Relay-Credential"] = credentialId;
    if (options.ownerAccount) headers["X-Relay-Owner"] = options.ownerAccount;
    const res = await fetch(base + path, { method, headers, body: method === "GET" ? undefined : body });
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : undefined;
    if (res.status >= 400) {
      const err = parsed?.error ?? {};
      throw new RelayError(res.status, err.code ?? res.status, err.message ?? text, err.data);
    }
    return { status: res.status, body: parsed as T };
  }

  const get = async <T = any>(path: string) => (await request<T>("GET", path)).body;
  const post = async <T = any>(path: string, payload: unknown = {}) => (await request<T>("POST", path, payload)).body;

  return {
    get credentialId() { return credentialId; },
    /** Register the signer's key as a backend credential (the request is signed by that key). */
    async register(args: { name?: string; webhookUrl?: string } = {}) {
      const cred = await post("/relay/v1/credentials", { address: getAddress(options.signer.address), ...args });
      credentialId = cred.credentialId;
      return cred;
    },
    credential: () => get("/relay/v1/credentials/me"),
    retire: () => post("/relay/v1/credentials/me/retire"),
    /** Ask for access (backend) or grant it (owner); answers what the owner signs. */
    prepareGrant: (args: { account: Address; permissions: unknown; credentialId?: string; mode?: "enable" | "ownerOp" }) =>
      post("/relay/v1/grants", args),
    /** The owner's signature of `grant.enable.digest` (or of `grant.ownerOp.userOpHash`). */
    activate: (grantId: string, signature: Hex) => post(`/relay/v1/grants/${grantId}/activate`, { signature }),
    grant: (grantId: string) => get(`/relay/v1/grants/${grantId}`),
    grants: () => get("/relay/v1/grants"),
    revocation: (grantId: string) => get(`/relay/v1/grants/${grantId}/revocation`),
    revoke: (grantId: string, ownerOp?: { userOp: unknown; signature: Hex }) =>
      post(`/relay/v1/grants/${grantId}/revoke`, ownerOp ? { ownerOp } : {}),
    /** Calls for an account that authorised this credential; resolves once the pool has the op
     * (or the call is queued). A policy refusal throws RelayError with the RPC's code and data. */
    execute: (args: { account: Address; calls: RelayCall[]; idempotencyKey: string }) => post("/relay/v1/calls", args),
    call: (callId: string) => get(`/relay/v1/calls/${callId}`),
    /** Polls the call until it is mined or dropped. */
    async waitForCall(callId: string, { timeoutMs = 60_000, intervalMs = 200 } = {}) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const c = await get(`/relay/v1/calls/${callId}`);
        if (c.status === "mined" || c.status === "dropped") return c;
        if (Date.now() > deadline) throw new Error(`call ${callId} still ${c.status} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, intervalMs));
      }
    },
    audit: () => get("/relay/v1/audit"),
    info: () => get("/relay/v1/info"),
  };
}

/** True when a webhook request was signed by the relay (`webhookSigner` of GET /relay/v1/info)
 * within `maxSkewSeconds`. `path` is the request's path with its query, `body` the raw text. */
export async function verifyRelayWebhook(args: {
  webhookSigner: Address; path: string; body: string; headers: Record<string, string | undefined>; maxSkewSeconds?: number;
}): Promise<boolean> {
  const h = (name: string) => args.headers[name] ?? args.headers[name.toLowerCase()];
  const timestamp = h("X-Relay-Timestamp");
  const nonce = h("X-Relay-Nonce");
  const signature = h("X-Relay-Signature") as Hex | undefined;
  if (!timestamp || !nonce || !signature) return false;
  if (Math.abs(Number(timestamp) - Date.now() / 1000) > (args.maxSkewSeconds ?? 300)) return false;
  const signer = await recoverMessageAddress({ message: relayRequestMessage("POST", args.path, timestamp, nonce, args.body), signature });
  return getAddress(signer) === getAddress(args.webhookSigner);
}
