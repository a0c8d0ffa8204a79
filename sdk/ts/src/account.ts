// toSessionAccount: a viem SmartAccount for SessionAccount, in owner mode (the owner signs,
// mode 0x00) or in session mode (a session key signs, mode 0x01, or 0x02 "enable" for the op that
// grants the session with the owner's EIP-712 signature), behind SessionAccountFactory (EntryPoint
// v0.7, v0.8, v0.9) or as the EIP-7702 delegate of an EOA (v0.8, v0.9). Works with viem's
// createBundlerClient and permissionless' createSmartAccountClient unchanged.
import {
  decodeFunctionData,
  encodeFunctionData,
  getAddress,
  hashTypedData,
  type Account,
  type Address,
  type Hex,
  type LocalAccount,
  type SignedAuthorization,
} from "viem";
import { getBlock, getCode, prepareAuthorization, readContract } from "viem/actions";
import {
  entryPoint07Abi,
  entryPoint07Address,
  entryPoint08Abi,
  entryPoint08Address,
  entryPoint09Abi,
  entryPoint09Address,
  getUserOperationHash,
  getUserOperationTypedData,
  toSmartAccount,
  type SmartAccount,
  type SmartAccountImplementation,
  type UserOperation,
} from "viem/account-abstraction";
import { sessionAccountAbi, sessionAccountFactoryAbi } from "./abi.js";
import { personalSignTypedData, typedDataSignTypedData, wrapTypedDataSignature } from "./erc1271.js";
import {
  encodeEnableSignature,
  encodeOwnerSignature,
  encodeSessionSignature,
  stubEnableSignature,
  stubOwnerSignature,
  stubSessionSignature,
} from "./signatures.js";
import { periodIndexAt, type SessionSpec } from "./spec.js";

export type SessionEntryPointVersion = "0.7" | "0.8" | "0.9";

export const SESSION_ENTRY_POINTS = {
  "0.7": { address: entryPoint07Address, abi: entryPoint07Abi, version: "0.7", eip7702: false },
  "0.8": { address: entryPoint08Address, abi: entryPoint08Abi, version: "0.8", eip7702: true },
  "0.9": { address: entryPoint09Address, abi: entryPoint09Abi, version: "0.9", eip7702: true },
} as const;

/** Something that signs: a viem local account (raw digests and typed data) or any account /
 * wallet that signs typed data (enough for owner mode on v0.8+ and for enable signatures). */
export type Signer = Pick<Account, "address"> & {
  sign?: LocalAccount["sign"];
  signTypedData?: LocalAccount["signTypedData"];
  signMessage?: LocalAccount["signMessage"];
};

export type SessionModeParameters = {
  /** the session key (a local account: it signs userOpHash digests) */
  signer: LocalAccount;
  /** the granted spec; needed for enable mode and to compute the allowance period */
  spec?: SessionSpec;
  /** enable mode: the owner's signature of enableTypedData(spec, nonce) (see signEnableSession);
   * the first op granting the session carries it, later ops use plain session mode */
  enable?: { ownerSignature: Hex; nonce: bigint };
  /** allowance period to name (default: the one covering the latest block's timestamp) */
  periodIndex?: number;
};

export type ToSessionAccountParameters = {
  client: SessionAccountImplementation["client"];
  /** EntryPoint version (default "0.7"); the account implementation is bound to one */
  entryPoint?: SessionEntryPointVersion;
  /** the owner: a signer for owner mode, or just its address when a session key signs */
  owner: Signer | Address;
  /** SessionAccountFactory of this EntryPoint (a counterfactual account deploys with its first op) */
  factory?: Address;
  salt?: bigint;
  /** the account address when known (skips factory.getAddress) */
  address?: Address;
  /** EIP-7702: the EOA `owner` delegates to this SessionAccount implementation; the first op
   * carries the owner's signed authorization (owner must then be a local account) */
  eip7702?: { implementation: Address };
  /** session mode (omitted: owner mode) */
  session?: SessionModeParameters;
  /** 2D nonce key (default 0: sequential nonces, as most SDKs) */
  nonceKey?: bigint;
};

export type SessionAccountExtension = {
  abi: typeof sessionAccountAbi;
  mode: "owner" | "session";
  ownerAddress: Address;
  sessionSigner: Address | undefined;
  spec: SessionSpec | undefined;
  factoryAddress: Address | undefined;
  salt: bigint;
  eip7702Implementation: Address | undefined;
  /** the entry point version, also as a plain string */
  entryPointVersion: SessionEntryPointVersion;
};

export type SessionAccountImplementation = SmartAccountImplementation<
  typeof entryPoint07Abi | typeof entryPoint08Abi | typeof entryPoint09Abi,
  SessionEntryPointVersion,
  SessionAccountExtension,
  boolean
>;

export type SessionSmartAccount = SmartAccount<SessionAccountImplementation>;

function signerOf(owner: Signer | Address): Signer | undefined {
  return typeof owner === "string" ? undefined : owner;
}

async function signHash(who: Signer, hash: Hex, typedData: (() => Parameters<LocalAccount["signTypedData"]>[0]) | null, what: string): Promise<Hex> {
  if (who.sign) return who.sign({ hash });
  if (typedData && who.signTypedData) return who.signTypedData(typedData());
  throw new Error(`${what} must be a local account (it signs a raw digest): ${who.address}`);
}

export async function toSessionAccount(parameters: ToSessionAccountParameters): Promise<SessionSmartAccount> {
  const { client, session } = parameters;
  const version = parameters.entryPoint ?? "0.7";
  const ep = SESSION_ENTRY_POINTS[version];
  if (!ep) throw new Error(`unsupported EntryPoint version ${version}`);
  const ownerSigner = signerOf(parameters.owner);
  const ownerAddress = getAddress(typeof parameters.owner === "string" ? parameters.owner : parameters.owner.address);
  const salt = parameters.salt ?? 0n;
  const factory = parameters.factory ? getAddress(parameters.factory) : undefined;
  const eip7702 = parameters.eip7702;
  if (eip7702 && !ep.eip7702) throw new Error(`EntryPoint v${version} does not support EIP-7702 accounts`);
  if (!session && !ownerSigner) throw new Error("owner mode needs a signer as owner (or pass `session`)");

  let address: Address;
  if (parameters.address) address = getAddress(parameters.address);
  else if (eip7702) address = ownerAddress;
  else if (factory) {
    address = await readContract(client, {
      address: factory,
      abi: sessionAccountFactoryAbi,
      functionName: "getAddress",
      args: [ownerAddress, salt],
    });
  } else throw new Error("give the account `address`, a `factory`, or `eip7702`");

  const chainId = () => {
    const id = client.chain?.id;
    if (id === undefined) throw new Error("the client needs a chain");
    return id;
  };

  // session mode: is the enable payload still needed? (the session is not granted with this nonce yet)
  const needsEnable = async (): Promise<boolean> => {
    if (!session?.enable) return false;
    const code = await getCode(client, { address });
    if (!code || code === "0x") return true;
    if (eip7702 && !code.toLowerCase().startsWith("0xef0100")) return true;
    const current = await readContract(client, {
      address,
      abi: sessionAccountAbi,
      functionName: "grantNonce",
      args: [session.signer.address],
    });
    return BigInt(current as bigint) === session.enable.nonce;
  };

  const periodIndex = async (): Promise<number> => {
    if (!session) return 0;
    if (session.periodIndex !== undefined) return session.periodIndex;
    if (!session.spec || !session.spec.period) return 0;
    const block = await getBlock(client, { blockTag: "latest" });
    return periodIndexAt(session.spec, block.timestamp);
  };

  const requireSpec = (): SessionSpec => {
    if (!session?.spec) throw new Error("enable mode needs session.spec");
    return session.spec;
  };

  const nonceKey = parameters.nonceKey ?? 0n;

  const implementation: SessionAccountImplementation = {
    client,
    entryPoint: ep as unknown as SessionAccountImplementation["entryPoint"],
    extend: {
      abi: sessionAccountAbi,
      mode: session ? "session" : "owner",
      ownerAddress,
      sessionSigner: session ? getAddress(session.signer.address) : undefined,
      spec: session?.spec,
      factoryAddress: factory,
      salt,
      eip7702Implementation: eip7702 ? getAddress(eip7702.implementation) : undefined,
      entryPointVersion: version,
    },
    ...(eip7702
      ? { authorization: { account: (ownerSigner ?? parameters.owner) as never, address: getAddress(eip7702.implementation) } }
      : {}),
    nonceKeyManager: {
      consume: async () => Number(nonceKey),
      get: async () => Number(nonceKey),
      increment: () => {},
      reset: () => {},
    },
    async getAddress() {
      return address;
    },
    async getFactoryArgs() {
      if (eip7702) return { factory: "0x7702" as Address, factoryData: "0x" as Hex };
      if (!factory) return { factory: undefined, factoryData: undefined };
      return {
        factory,
        factoryData: encodeFunctionData({
          abi: sessionAccountFactoryAbi,
          functionName: "createAccount",
          args: [ownerAddress, salt],
        }),
      };
    },
    async encodeCalls(calls) {
      if (calls.length === 1) {
        const c = calls[0]!;
        return encodeFunctionData({
          abi: sessionAccountAbi,
          functionName: "execute",
          args: [c.to, c.value ?? 0n, c.data ?? "0x"],
        });
      }
      return encodeFunctionData({
        abi: sessionAccountAbi,
        functionName: "executeBatch",
        args: [calls.map((c) => ({ target: c.to, value: c.value ?? 0n, data: c.data ?? "0x" }))],
      });
    },
    async decodeCalls(data) {
      const { functionName, args } = decodeFunctionData({ abi: sessionAccountAbi, data });
      if (functionName === "execute") {
        const [to, value, callData] = args as readonly [Address, bigint, Hex];
        return [{ to, value, data: callData }];
      }
      if (functionName === "executeBatch") {
        const [calls] = args as readonly [readonly { target: Address; value: bigint; data: Hex }[]];
        return calls.map((c) => ({ to: c.target, value: c.value, data: c.data }));
      }
      throw new Error(`callData is ${functionName}, neither execute nor executeBatch`);
    },
    async getStubSignature() {
      if (!session) return stubOwnerSignature();
      const period = await periodIndex();
      if (await needsEnable()) return stubEnableSignature(requireSpec(), session.enable!.nonce, period);
      return stubSessionSignature(getAddress(session.signer.address), period);
    },
    async signUserOperation(params) {
      const { chainId: id = chainId(), ...op } = params;
      const userOperation = { ...op, sender: address, signature: "0x" } as UserOperation;
      const hash = getUserOperationHash({
        chainId: id,
        entryPointAddress: ep.address,
        entryPointVersion: version,
        userOperation,
      });
      // v0.8+ hashes are EIP-712 digests: wallets that only sign typed data produce the same signature
      const typed =
        version === "0.7"
          ? null
          : () => getUserOperationTypedData({ chainId: id, entryPointAddress: ep.address, userOperation }) as never;
      if (!session) return encodeOwnerSignature(await signHash(ownerSigner!, hash, typed, "the owner (v0.7)"));
      const sessionSignature = await session.signer.sign!({ hash });
      const period = await periodIndex();
      if (await needsEnable()) {
        return encodeEnableSignature({
          spec: requireSpec(),
          nonce: session.enable!.nonce,
          ownerSignature: session.enable!.ownerSignature,
          periodIndex: period,
          sessionSignature,
        });
      }
      return encodeSessionSignature({ signer: getAddress(session.signer.address), periodIndex: period, signature: sessionSignature });
    },
    // ERC-1271 through ERC-7739 (see erc1271.ts): the owner signs typed data nested in this
    // account's domain; viem's toSmartAccount adds the ERC-6492 wrapper while undeployed.
    async signMessage({ message }) {
      const typed = personalSignTypedData(message, address, chainId());
      return signTyped(typed as never);
    },
    async signTypedData(typedData) {
      const nested = typedDataSignTypedData(typedData as never, address, chainId());
      return wrapTypedDataSignature(typedData as never, await signTyped(nested as never));
    },
  };
  // the owner's signature of typed data (a wallet shows it); a session key may not sign for the account
  async function signTyped(typed: Parameters<LocalAccount["signTypedData"]>[0]): Promise<Hex> {
    if (session || !ownerSigner) {
      throw new Error("a session key cannot sign messages for SessionAccount: isValidSignature (ERC-1271) answers for the owner only");
    }
    if (ownerSigner.signTypedData) return ownerSigner.signTypedData(typed);
    return signHash(ownerSigner, hashTypedData(typed as never), null, "the owner");
  }
  return (await toSmartAccount(implementation)) as SessionSmartAccount;
}

/** EIP-7702: the owner's signed authorization delegating the EOA to the SessionAccount
 * implementation, or undefined once the EOA is delegated to it. viem only puts a stub
 * authorization into an op by itself (for estimation), so pass this to sendUserOperation:
 *   client.sendUserOperation({ calls, authorization: await eip7702Authorization(account, owner) })
 * The bundler sends the handleOps transaction, so the authorization names the EOA's current nonce. */
export async function eip7702Authorization(
  account: SessionSmartAccount,
  owner: LocalAccount,
): Promise<SignedAuthorization | undefined> {
  const implementation = account.eip7702Implementation;
  if (!implementation) throw new Error("not an EIP-7702 session account");
  if (getAddress(owner.address) !== getAddress(account.address)) throw new Error("the authorization must be signed by the EOA itself");
  const code = await getCode(account.client, { address: account.address });
  if (code && code.toLowerCase() === `0xef0100${implementation.slice(2).toLowerCase()}`) return undefined;
  if (!owner.signAuthorization) throw new Error("the owner account cannot sign EIP-7702 authorizations");
  const auth = await prepareAuthorization(account.client, { account: owner, address: implementation });
  return owner.signAuthorization(auth);
}
