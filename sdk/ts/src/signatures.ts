// UserOperation.signature layouts of SessionAccount (first byte = mode; ECDSA signatures are
// 65 bytes r‖s‖v over the raw digest, low s):
//   0x00 owner    0x00 ‖ sig(owner, userOpHash)                                        66 bytes
//   0x01 session  0x01 ‖ signer (20) ‖ periodIndex (uint48 big-endian) ‖ sig(signer, userOpHash)  92 bytes
//   0x02 enable   0x02 ‖ abi.encode(SessionSpec, uint64 nonce, bytes ownerSig, uint48 periodIndex, bytes sessionSig)
import {
  concat,
  decodeAbiParameters,
  encodeAbiParameters,
  getAddress,
  hexToNumber,
  numberToHex,
  size,
  slice,
  type AbiParameter,
  type Address,
  type Hex,
} from "viem";
import { normalizeSpec, SESSION_SPEC_ABI, type SessionSpec } from "./spec.js";

export const MODE_OWNER = 0x00;
export const MODE_SESSION = 0x01;
export const MODE_ENABLE = 0x02;

/** A well-formed 65-byte signature for gas estimation: the account runs its full validation
 * (ecrecover included) and returns SIG_VALIDATION_FAILED instead of reverting. */
export const DUMMY_ECDSA_SIGNATURE: Hex = concat([numberToHex(1, { size: 32 }), numberToHex(1, { size: 32 }), "0x1b"]);

const ENABLE_PAYLOAD: AbiParameter[] = [
  SESSION_SPEC_ABI,
  { name: "nonce", type: "uint64" },
  { name: "ownerSig", type: "bytes" },
  { name: "periodIndex", type: "uint48" },
  { name: "sessionSig", type: "bytes" },
];

function sig65(sig: Hex, what: string): Hex {
  if (size(sig) !== 65) throw new Error(`${what} must be 65 bytes r‖s‖v, got ${size(sig)}`);
  return sig;
}

export function encodeOwnerSignature(signature: Hex): Hex {
  return concat([numberToHex(MODE_OWNER, { size: 1 }), sig65(signature, "owner signature")]);
}

export function encodeSessionSignature(args: { signer: Address; periodIndex: number; signature: Hex }): Hex {
  if (!Number.isInteger(args.periodIndex) || args.periodIndex < 0 || args.periodIndex >= 2 ** 48) {
    throw new Error("period index must fit in uint48");
  }
  return concat([
    numberToHex(MODE_SESSION, { size: 1 }),
    args.signer,
    numberToHex(args.periodIndex, { size: 6 }),
    sig65(args.signature, "session signature"),
  ]);
}

export type EnableSignatureParts = {
  spec: SessionSpec;
  nonce: bigint;
  ownerSignature: Hex;
  periodIndex: number;
  sessionSignature: Hex;
};

export function encodeEnableSignature(args: EnableSignatureParts): Hex {
  const payload = encodeAbiParameters(ENABLE_PAYLOAD, [
    args.spec,
    args.nonce,
    sig65(args.ownerSignature, "owner signature"),
    args.periodIndex,
    sig65(args.sessionSignature, "session signature"),
  ]);
  return concat([numberToHex(MODE_ENABLE, { size: 1 }), payload]);
}

export type DecodedSignature =
  | { mode: "owner"; signature: Hex }
  | { mode: "session"; signer: Address; periodIndex: number; signature: Hex }
  | ({ mode: "enable" } & EnableSignatureParts);

/** Parses UserOperation.signature; throws where the account reverts InvalidSignatureFormat. */
export function decodeSignature(signature: Hex): DecodedSignature {
  const length = size(signature);
  if (length === 0) throw new Error("empty signature");
  const mode = hexToNumber(slice(signature, 0, 1));
  if (mode === MODE_OWNER) {
    if (length !== 66) throw new Error("an owner signature is 66 bytes");
    return { mode: "owner", signature: slice(signature, 1) };
  }
  if (mode === MODE_SESSION) {
    if (length !== 92) throw new Error("a session signature is 92 bytes");
    return {
      mode: "session",
      signer: getAddress(slice(signature, 1, 21)),
      periodIndex: hexToNumber(slice(signature, 21, 27)),
      signature: slice(signature, 27),
    };
  }
  if (mode === MODE_ENABLE) {
    const [spec, nonce, ownerSignature, periodIndex, sessionSignature] = decodeAbiParameters(
      ENABLE_PAYLOAD,
      slice(signature, 1),
    ) as [SessionSpec, bigint, Hex, number, Hex];
    return {
      mode: "enable",
      spec: normalizeSpec(spec),
      nonce,
      ownerSignature,
      periodIndex: Number(periodIndex),
      sessionSignature,
    };
  }
  throw new Error(`unknown signature mode 0x${mode.toString(16).padStart(2, "0")}`);
}

/** Stub signatures of the right layout for eth_estimateUserOperationGas. */
export function stubOwnerSignature(): Hex {
  return encodeOwnerSignature(DUMMY_ECDSA_SIGNATURE);
}

export function stubSessionSignature(signer: Address, periodIndex: number): Hex {
  return encodeSessionSignature({ signer, periodIndex, signature: DUMMY_ECDSA_SIGNATURE });
}

export function stubEnableSignature(spec: SessionSpec, nonce: bigint, periodIndex: number): Hex {
  return encodeEnableSignature({
    spec,
    nonce,
    ownerSignature: DUMMY_ECDSA_SIGNATURE,
    periodIndex,
    sessionSignature: DUMMY_ECDSA_SIGNATURE,
  });
}
