// ERC-1271 signatures of SessionAccount's owner in the ERC-7739 forms the account checks
// (contracts/Erc7739.sol): the owner signs typed data nested in the ACCOUNT's EIP-712 domain, so
// the signature holds for this account on this chain only, and a wallet still shows what is
// signed (the app's own struct inside TypedDataSign, or the message inside PersonalSign).
// Session keys cannot sign for the account: isValidSignature answers for the owner only.
import {
  concatHex,
  hashDomain,
  hashStruct,
  numberToHex,
  size,
  stringToHex,
  toPrefixedMessage,
  zeroHash,
  hashTypedData,
  type Address,
  type Hex,
  type LocalAccount,
  type SignableMessage,
  type TypedDataDefinition,
  type TypedDataDomain,
} from "viem";
import { getTypesForEIP712Domain } from "viem";

/** The account's EIP-712 domain (its eip712Domain(), ERC-5267); also the enable-mode domain. */
export function sessionAccountDomain(account: Address, chainId: number) {
  return { name: "SessionAccount", version: "1", chainId, verifyingContract: account } as const;
}

type TypeField = { name: string; type: string };
type Types = Record<string, readonly TypeField[]>;

/** What the owner signs for isValidSignature(hashMessage(message), signature) (PersonalSign). */
export function personalSignTypedData(message: SignableMessage, account: Address, chainId: number) {
  return {
    domain: sessionAccountDomain(account, chainId),
    types: { PersonalSign: [{ name: "prefixed", type: "bytes" }] },
    primaryType: "PersonalSign",
    message: { prefixed: toPrefixedMessage(message) },
  } as const;
}

/** What the owner signs for isValidSignature(hashTypedData(typedData), signature): the app's
 * struct as `contents` of TypedDataSign, in the app's domain, with the account's domain fields. */
export function typedDataSignTypedData(typedData: TypedDataDefinition, account: Address, chainId: number) {
  const { domain, types, primaryType, message } = appTypedData(typedData);
  const accountDomain = sessionAccountDomain(account, chainId);
  return {
    domain,
    types: {
      ...types,
      TypedDataSign: [
        { name: "contents", type: primaryType },
        { name: "name", type: "string" },
        { name: "version", type: "string" },
        { name: "chainId", type: "uint256" },
        { name: "verifyingContract", type: "address" },
        { name: "salt", type: "bytes32" },
      ],
    },
    primaryType: "TypedDataSign",
    message: { contents: message, ...accountDomain, salt: zeroHash },
  };
}

/** The isValidSignature signature for typed data: ownerSignature ‖ APP_DOMAIN_SEPARATOR ‖
 * contents ‖ contentsDescription ‖ uint16(length). The description is the contents' types in
 * the order EIP-712 sorts them under TypedDataSign; when that order does not start with the
 * primary type (e.g. Permit2's PermitDetails before PermitSingle) the name is appended
 * (ERC-7739 explicit mode). */
export function wrapTypedDataSignature(typedData: TypedDataDefinition, ownerSignature: Hex): Hex {
  const { domain, types, primaryType, message } = appTypedData(typedData);
  const appDomainSeparator = hashDomain({
    domain,
    types: { EIP712Domain: getTypesForEIP712Domain({ domain }), ...types },
  } as never);
  const contents = hashStruct({ data: message, primaryType, types } as never);
  const contentsType = sortedTypes(primaryType, types);
  const description = contentsType.startsWith(`${primaryType}(`) ? contentsType : contentsType + primaryType;
  const descriptionHex = stringToHex(description);
  return concatHex([ownerSignature, appDomainSeparator, contents, descriptionHex, numberToHex(size(descriptionHex), { size: 2 })]);
}

function appTypedData(typedData: TypedDataDefinition) {
  const { domain = {}, types, primaryType, message } = typedData as unknown as {
    domain?: TypedDataDomain; types: Types; primaryType: string; message: Record<string, unknown>;
  };
  if (primaryType === "EIP712Domain") throw new Error("typed data whose primary type is EIP712Domain has no contents to sign");
  const { EIP712Domain: _, ...rest } = types;
  return { domain, types: rest as Types, primaryType, message };
}

/** EIP-712 encodeType of `primaryType` and every struct it references, all sorted by name (the
 * order they take as dependencies of TypedDataSign). */
function sortedTypes(primaryType: string, types: Types): string {
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name) || !types[name]) return;
    seen.add(name);
    for (const field of types[name]!) visit(field.type.replace(/(\[\d*\])+$/, ""));
  };
  visit(primaryType);
  return [...seen].sort().map((name) => `${name}(${types[name]!.map((f) => `${f.type} ${f.name}`).join(",")})`).join("");
}

/** A signer's isValidSignature signature for `message` on `account` (what account.signMessage
 * returns in owner mode, for any key: only the owner's is valid). */
export async function signErc1271Message(parameters: {
  signer: Pick<LocalAccount, "signTypedData">; account: Address; chainId: number; message: SignableMessage;
}): Promise<Hex> {
  const { signer, account, chainId, message } = parameters;
  return signer.signTypedData(personalSignTypedData(message, account, chainId) as never);
}

/** A signer's isValidSignature signature for `typedData` on `account` (ERC-7739 TypedDataSign). */
export async function signErc1271TypedData(parameters: {
  signer: Pick<LocalAccount, "signTypedData">; account: Address; chainId: number; typedData: TypedDataDefinition;
}): Promise<Hex> {
  const { signer, account, chainId, typedData } = parameters;
  const signature = await signer.signTypedData(typedDataSignTypedData(typedData, account, chainId) as never);
  return wrapTypedDataSignature(typedData, signature);
}

/** The digest the account checks for a PersonalSign signature of `message` (for signers that
 * sign raw digests). */
export function personalSignDigest(message: SignableMessage, account: Address, chainId: number): Hex {
  return hashTypedData(personalSignTypedData(message, account, chainId) as never);
}
