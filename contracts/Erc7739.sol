// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/*
 * ERC-7739 (readable typed signatures for smart accounts): the nested EIP-712 digests an
 * ERC-1271 signature of SessionAccount's owner is checked against, so that one signature of an
 * owner key is valid for exactly one account on one chain (an owner of several accounts, or of
 * a clone and its own 7702-delegated EOA, cannot have a signature replayed between them).
 *
 * The account's own domain (ERC-5267): {name "SessionAccount", version "1", chainId,
 * verifyingContract = the account}, no salt (TypedDataSign carries bytes32(0) for it).
 *
 *   PersonalSign (hash = an EIP-191 personal message hash)      signature = ownerSig (65 bytes)
 *     digest = EIP-712(account domain, PersonalSign{prefixed}), its struct hash
 *     keccak256(abi.encode(keccak256("PersonalSign(bytes prefixed)"), hash))
 *
 *   TypedDataSign (hash = an app's EIP-712 digest 0x1901 ‖ APP_DOMAIN_SEPARATOR ‖ contents)
 *     signature = ownerSig (65) ‖ APP_DOMAIN_SEPARATOR (32) ‖ contents (32)
 *                 ‖ contentsDescription ‖ uint16(contentsDescription.length)
 *     contentsDescription = contentsType (implicit: it starts with contentsName and ends with ')')
 *                         | contentsType ‖ contentsName (explicit: contentsType's types in EIP-712
 *                           order do not start with the primary type, e.g. Permit2's
 *                           PermitDetails before PermitSingle)
 *     digest = 0x1901 ‖ APP_DOMAIN_SEPARATOR ‖ keccak256(abi.encode(
 *                keccak256("TypedDataSign(" contentsName " contents,string name,string version,"
 *                          "uint256 chainId,address verifyingContract,bytes32 salt)" contentsType),
 *                contents, keccak256(name), keccak256(version), chainId, account, bytes32(0)))
 *     A contentsName that is empty, starts with a lower-case letter or '(' or holds ' ' ',' ')'
 *     or NUL is refused (the EIP's guard against breaking out of the type encoding).
 *
 * The parsing and hashing are OpenZeppelin's ERC7739Utils (npm @openzeppelin/contracts); this
 * library only adds what the account needs around them: a 65-byte owner signature, the
 * EIP's recommended refusal of lower-case contents names (OpenZeppelin accepts them), and the
 * account's domain fields.
 */
import {ERC7739Utils} from "@openzeppelin/contracts/utils/cryptography/draft-ERC7739Utils.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";

library Erc7739 {
    uint256 internal constant ECDSA_LENGTH = 65;

    function personalSignDigest(bytes32 accountDomainSeparator, bytes32 hash) internal pure returns (bytes32) {
        return MessageHashUtils.toTypedDataHash(accountDomainSeparator, ERC7739Utils.personalSignStructHash(hash));
    }

    /// The TypedDataSign digest for `hash` and its wrapped `signature`, or bytes32(0) when the
    /// signature is not a TypedDataSign wrapping of `hash` (wrong layout, not a 65-byte owner
    /// signature, a contents hash that does not rebuild `hash`, or an unsafe contentsName).
    function typedDataSignDigest(
        bytes32 hash,
        bytes calldata signature,
        bytes32 nameHash,
        bytes32 versionHash,
        address account
    ) internal view returns (bytes32) {
        (bytes calldata ownerSignature, bytes32 appDomainSeparator, bytes32 contents, string calldata description) =
            ERC7739Utils.decodeTypedDataSig(signature);
        if (ownerSignature.length != ECDSA_LENGTH) return bytes32(0);
        if (MessageHashUtils.toTypedDataHash(appDomainSeparator, contents) != hash) return bytes32(0);
        (string calldata contentsName, string calldata contentsType) = ERC7739Utils.decodeContentsDescr(description);
        bytes calldata name = bytes(contentsName);
        if (name.length == 0 || (name[0] >= "a" && name[0] <= "z")) return bytes32(0);
        bytes32 structHash = ERC7739Utils.typedDataSignStructHash(
            contentsName,
            contentsType,
            contents,
            abi.encode(nameHash, versionHash, block.chainid, account, bytes32(0))
        );
        return MessageHashUtils.toTypedDataHash(appDomainSeparator, structHash);
    }
}
