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

/** Anything that signs EIP-712 typed data: a viem Account, a WalletClient with an account, … */
export type TypedDataSigner = { signTypedData: (typedData: EnableTypedData) => Promise<Hex> };

/** The owner's enable-mode signature of `spec` with grant nonce `nonce` (read it with readGrantNonce). */
export async function signEnableSession(args: {
  owner: TypedDataSigner | { signTypedData: (p: never) => Promise<Hex> };
  account: Address;
  chainId: number;
  spec: SessionSpec;
  nonce: bigint;
}): Promise<Hex> {
  checkSpec(args.spec);
  const typed = enableTypedData({ spec: args.spec, nonce: args.nonce, account: getAddress(args.account), chainId: args.chainId });
  return (args.owner.signTypedData as (t: EnableTypedData) => Promise<Hex>)(typed);
}

/** Reads the grant nonce and signs: what `toSessionAccount({ session: { enable } })` needs. */
export async function enableSession(args: {
  client: ReadClient;
  owner: TypedDataSigner | { signTypedData: (p: never) => Promise<Hex> };
  account: Address;
  spec: SessionSpec;
}): Promise<{ ownerSignature: Hex; nonce: bigint }> {
  const chainId = args.client.chain?.id;
  if (chainId === undefined) throw new Error("the client needs a chain");
  const nonce = await readGrantNonce(args.client, args.account, args.spec.signer);
  const ownerSignature = await signEnableSession({ owner: args.owner, account: args.account, chainId, spec: args.spec, nonce });
  return { ownerSignature, nonce };
}
