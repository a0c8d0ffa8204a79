// Granting and revoking sessions: the calls (for an owner-mode UserOperation or a plain
// transaction from the owner), the grant nonce, and enable-mode signing through any wallet's
// signTypedData (the owner signs once; the session's first op carries the grant).
import { encodeFunctionData, getAddress, type Address, type Hex } from "viem";
import { getCode, readContract } from "viem/actions";
import { sessionAccountAbi } from "./abi.js";
import { checkSpec } from "./policies.js";
import { enableTypedData, normalizeSpec, type EnableTypedData, type SessionSpec } from "./spec.js";

type ReadClient = Parameters<typeof readContract>[0];

/** The call granting `spec` on `account` (replaces any session of the same signer, fresh counters).
 * Send it in an owner-mode UserOperation (`calls: [grantSessionCall(...)]`) or as a transaction
 * from the owner (for an EIP-7702 EOA: to itself). */
export function grantSessionCall(account: Address, spec: SessionSpec): { to: Address; data: Hex; value: bigint } {
  checkSpec(spec);
  return { to: getAddress(account), value: 0n, data: encodeFunctionData({ abi: sessionAccountAbi, functionName: "grantSession", args: [spec] }) };
}

/** The call revoking `signer`'s session (it also invalidates unused enable signatures). */
export function revokeSessionCall(account: Address, signer: Address): { to: Address; data: Hex; value: bigint } {
  return { to: getAddress(account), value: 0n, data: encodeFunctionData({ abi: sessionAccountAbi, functionName: "revokeSession", args: [getAddress(signer)] }) };
}

/** grantNonce(signer) of the account; 0 while the account has no code (a counterfactual account). */
export async function readGrantNonce(client: ReadClient, account: Address, signer: Address): Promise<bigint> {
  const code = await getCode(client, { address: account });
  if (!code || code === "0x") return 0n;
  return (await readContract(client, { address: account, abi: sessionAccountAbi, functionName: "grantNonce", args: [getAddress(signer)] })) as bigint;
}

export type OnChainSession = { spec: SessionSpec; status: "none" | "active" | "revoked"; grantNonce: bigint; usageCount: number };

/** The account's own view of a session (getSession), without the bundler's pending usage. */
export async function readSession(client: ReadClient, account: Address, signer: Address): Promise<OnChainSession> {
  const info = (await readContract(client, { address: account, abi: sessionAccountAbi, functionName: "getSession", args: [getAddress(signer)] })) as {
    spec: SessionSpec; status: number; grantNonce: bigint; usageCount: number;
  };
  return {
    spec: normalizeSpec(info.spec),
    status: (["none", "active", "revoked"] as const)[Number(info.status)] ?? "none",
    grantNonce: BigInt(info.grantNonce),
    usageCount: Number(info.usageCount),
  };
}

/** The account's epoch() (revokeAllSessions and EIP-7702 re-delegations bump it; enable
 * signatures must name it); 0 while the account has no code. */
export async function readEpoch(client: ReadClient, account: Address): Promise<number> {
  const code = await getCode(client, { address: account });
  if (!code || code === "0x") return 0;
  try {
    return Number(await readContract(client, { address: account, abi: sessionAccountAbi, functionName: "epoch" }));
  } catch {
    return 0; // not (yet) a SessionAccount, e.g. an EOA delegated elsewhere
  }
}

/** Anything that signs EIP-712 typed data: a viem Account, a WalletClient with an account, … */
export type TypedDataSigner = { signTypedData: (typedData: EnableTypedData) => Promise<Hex> };

/** The owner's enable-mode signature of `spec` with grant nonce `nonce` (read it with readGrantNonce). */
export async function signEnableSession(args: {
  owner: TypedDataSigner | { signTypedData: (p: never) => Promise<Hex> };
  account: Address;
  chainId: number;
  spec: SessionSpec;
  nonce: bigint;
  /** the account's epoch (readEpoch); default 0, a new account's */
  epoch?: number;
}): Promise<Hex> {
  checkSpec(args.spec);
  const typed = enableTypedData({ spec: args.spec, nonce: args.nonce, account: getAddress(args.account), chainId: args.chainId, epoch: args.epoch ?? 0 });
  return (args.owner.signTypedData as (t: EnableTypedData) => Promise<Hex>)(typed);
}

/** Reads the grant nonce and the epoch and signs: what `toSessionAccount({ session: { enable } })`
 * needs. `epoch` overrides the one read (e.g. +1 when the enabling op itself carries an EIP-7702
 * authorization, which starts a new epoch). */
export async function enableSession(args: {
  client: ReadClient;
  owner: TypedDataSigner | { signTypedData: (p: never) => Promise<Hex> };
  account: Address;
  spec: SessionSpec;
  epoch?: number;
}): Promise<{ ownerSignature: Hex; nonce: bigint; epoch: number }> {
  const chainId = args.client.chain?.id;
  if (chainId === undefined) throw new Error("the client needs a chain");
  const nonce = await readGrantNonce(args.client, args.account, args.spec.signer);
  const epoch = args.epoch ?? (await readEpoch(args.client, args.account));
  const ownerSignature = await signEnableSession({ owner: args.owner, account: args.account, chainId, spec: args.spec, nonce, epoch });
  return { ownerSignature, nonce, epoch };
}
