// ERC-7715 shape: a `wallet_grantPermissions`-style request turned into a SessionSpec and the
// owner's enable-mode signature. The returned `permissionsContext` is serializeSession(...) of
// the grant: the backend deserializes it and sends ops with its own key (the request's signer).
//
// Mapping (docs/sessions.md has the table):
//   expiry                                   -> validUntil
//   signer {type:"account"|"key", data.address | data.id} -> spec.signer
//   native-token-transfer {allowance}        -> transfer policy, any recipient, lifetime limit
//   native-token-recurring-allowance {allowance, start, period} -> transfer policy, allowance per period
//   erc20-token-transfer {address, allowance} -> ERC-20 transfer policy, lifetime limit on the amount
//   erc20-recurring-allowance {address, allowance, start, period} -> ERC-20 transfer policy, allowance
//   contract-call {address, functions?: [{functionName|signature|selector}]} -> one call policy each
//   policy "timestamp" {validAfter, validUntil} -> the window; "call-limit" / "usage-limit" {count} -> usageLimit
// Not mapped (refused with an error, never silently dropped): different periods or starts for
// several recurring allowances (one spec has one period), streaming permissions, gas / rate
// policies other than a usage count, and native value attached to contract calls (a contract-call
// permission allows no ETH; build the spec with callPolicy({ maxValuePerUse }) for that).
import { getAddress, hexToNumber, isHex, type Address, type Hex } from "viem";
import type { SessionSmartAccount } from "./account.js";
import { readEpoch, readGrantNonce, signEnableSession, type TypedDataSigner } from "./grants.js";
import { allowance, callPolicy, erc20TransferPolicy, lifetime, sessionSpec, transferPolicy, type Policy } from "./policies.js";
import { serializeSession, type SessionGrant } from "./serialize.js";
import type { GasPolicy, SessionSpec } from "./spec.js";

export type PermissionRequest = {
  chainId: Hex | number;
  address?: Address;
  expiry: number;
  signer: { type: "account" | "key" | string; data: { address?: Address; id?: Address; [k: string]: unknown } };
  permissions: { type: string; data: Record<string, any>; required?: boolean }[];
  policies?: { type: string; data: Record<string, any> }[];
};

export type PermissionResponse = PermissionRequest & {
  chainId: Hex;
  address: Address;
  /** serializeSession(grant): hand it to the backend */
  permissionsContext: string;
  /** the same, under the newer draft's name */
  context: string;
  accountMeta?: { factory: Address; factoryData: Hex };
  signerMeta: { userOpBuilder?: undefined; submitToAddress: Address };
  spec: SessionSpec;
  grant: SessionGrant;
};

const amount = (v: unknown, what: string): bigint => {
  if (typeof v === "bigint") return v;
  if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === "string" && (isHex(v) || /^\d+$/.test(v))) return BigInt(v);
  throw new Error(`${what} must be a hex or decimal amount, got ${String(v)}`);
};

/** SessionSpec of a permission request (no signing, no chain access). */
export function permissionRequestToSpec(request: PermissionRequest, gas?: GasPolicy): SessionSpec {
  const signer = request.signer.data.address ?? request.signer.data.id;
  if (!signer) throw new Error(`signer type ${request.signer.type}: give data.address (the session key's address)`);
  const policies: Policy[] = [];
  let period: number | undefined;
  let start: number | undefined;
  const recurring = (data: Record<string, any>, type: string) => {
    const p = Number(data.period);
    const s = Number(data.start ?? 0);
    if (!(p > 0)) throw new Error(`${type}: period must be a positive number of seconds`);
    if (period !== undefined && (p !== period || s !== start)) {
      throw new Error(`${type}: recurring allowances with different periods or starts do not map to one session (one period per SessionSpec)`);
    }
    period = p;
    start = s;
  };
  for (const perm of request.permissions) {
    const d = perm.data ?? {};
    switch (perm.type) {
      case "native-token-transfer": {
        const a = amount(d.allowance, perm.type);
        policies.push(transferPolicy({ maxValuePerUse: a, valueLimit: lifetime(a) }));
        break;
      }
      case "native-token-recurring-allowance": {
        recurring(d, perm.type);
        const a = amount(d.allowance, perm.type);
        policies.push(transferPolicy({ maxValuePerUse: a, valueLimit: allowance(a) }));
        break;
      }
      case "erc20-token-transfer":
        policies.push(erc20TransferPolicy({ token: getAddress(d.address ?? d.token), limit: lifetime(amount(d.allowance, perm.type)) }));
        break;
      case "erc20-recurring-allowance":
        recurring(d, perm.type);
        policies.push(erc20TransferPolicy({ token: getAddress(d.address ?? d.token), limit: allowance(amount(d.allowance, perm.type)) }));
        break;
      case "contract-call": {
        const target = getAddress(d.address ?? d.contract);
        const fns: any[] = d.functions ?? d.calls ?? [];
        if (fns.length === 0) policies.push(callPolicy({ target }));
        for (const f of fns) {
          const fn = typeof f === "string" ? f : (f.signature ?? f.selector ?? f.functionName);
          if (typeof fn !== "string" || (!fn.includes("(") && !/^0x[0-9a-fA-F]{8}$/.test(fn))) {
            throw new Error(`contract-call: give each function as a signature "name(types)" or a 4-byte selector, got ${JSON.stringify(f)}`);
          }
          policies.push(callPolicy({ target, function: fn }));
        }
        break;
      }
      default:
        throw new Error(`permission type ${perm.type} does not map to a SessionAccount session`);
    }
  }
  let validAfter = start ?? 0;
  let validUntil = request.expiry;
  let usageLimit = 0;
  for (const pol of request.policies ?? []) {
    if (pol.type === "timestamp" || pol.type === "time-frame") {
      if (pol.data.validAfter !== undefined) validAfter = Number(pol.data.validAfter);
      if (pol.data.validUntil !== undefined) validUntil = Math.min(validUntil || Infinity, Number(pol.data.validUntil));
    } else if (pol.type === "call-limit" || pol.type === "usage-limit") {
      usageLimit = Number(pol.data.count ?? pol.data.limit);
      if (!Number.isInteger(usageLimit) || usageLimit <= 0) throw new Error(`${pol.type}: count must be a positive integer`);
    } else {
      throw new Error(`policy type ${pol.type} does not map to a SessionAccount session`);
    }
  }
  if (start !== undefined && validAfter !== start) {
    throw new Error("a recurring allowance's start must equal the session's validAfter (periods start at validAfter)");
  }
  return sessionSpec({ signer: getAddress(signer), validAfter, validUntil, period: period ?? 0, usageLimit, policies,
    ...(gas ? { gas } : {}) });
}

/** `wallet_grantPermissions` for a SessionAccount: the owner signs the enable message of the
 * request's spec; the result carries a `permissionsContext` for the backend. */
export async function grantPermissions(args: {
  account: SessionSmartAccount;
  owner: TypedDataSigner | { signTypedData: (p: never) => Promise<Hex> };
  request: PermissionRequest;
  /** the session's gas budget and the paymasters it may use: ERC-7715 has no field for them, so
   * they come beside the request (default: DEFAULT_GAS_POLICY, no paymaster) */
  gas?: GasPolicy;
}): Promise<PermissionResponse> {
  const { account, request } = args;
  const chainId = account.client.chain?.id;
  if (chainId === undefined) throw new Error("the account's client needs a chain");
  const requested = typeof request.chainId === "number" ? request.chainId : hexToNumber(request.chainId);
  if (requested !== chainId) throw new Error(`request is for chain ${requested}, the account is on chain ${chainId}`);
  if (request.address && getAddress(request.address) !== getAddress(account.address)) {
    throw new Error(`request is for account ${request.address}, not ${account.address}`);
  }
  const spec = permissionRequestToSpec(request, args.gas);
  const nonce = await readGrantNonce(account.client as never, account.address, spec.signer);
  const epoch = await readEpoch(account.client as never, account.address);
  const ownerSignature = await signEnableSession({ owner: args.owner, account: account.address, chainId, spec, nonce, epoch });
  const grant: SessionGrant = {
    chainId,
    entryPoint: account.entryPointVersion,
    account: account.address,
    owner: account.ownerAddress,
    spec,
    enable: { ownerSignature, nonce },
    ...(account.factoryAddress ? { factory: account.factoryAddress, salt: account.salt } : {}),
    ...(account.eip7702Implementation ? { eip7702Implementation: account.eip7702Implementation } : {}),
  };
  const context = serializeSession(grant);
  const { factory, factoryData } = await account.getFactoryArgs();
  return {
    ...request,
    chainId: `0x${chainId.toString(16)}`,
    address: account.address,
    permissionsContext: context,
    context,
    ...(factory && factoryData && factory !== "0x7702" ? { accountMeta: { factory, factoryData } } : {}),
    signerMeta: { submitToAddress: account.address },
    spec,
    grant,
  };
}
