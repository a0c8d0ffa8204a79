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
 */
library Erc7739 {
    bytes32 internal constant PERSONAL_SIGN_TYPEHASH = keccak256("PersonalSign(bytes prefixed)");

    uint256 internal constant ECDSA_LENGTH = 65;
    /// ownerSig ‖ APP_DOMAIN_SEPARATOR ‖ contents ‖ uint16 length, without the description
    uint256 internal constant TYPED_OVERHEAD = ECDSA_LENGTH + 64 + 2;

    function personalSignDigest(bytes32 accountDomainSeparator, bytes32 hash) internal pure returns (bytes32) {
        return keccak256(
            abi.encodePacked(hex"1901", accountDomainSeparator, keccak256(abi.encode(PERSONAL_SIGN_TYPEHASH, hash)))
        );
    }

    /// The TypedDataSign digest for `hash` and its wrapped `signature`, or bytes32(0) when the
    /// signature is not a TypedDataSign wrapping of `hash` (wrong layout, a contents hash that
    /// does not rebuild `hash`, or an unsafe contentsName).
    function typedDataSignDigest(
        bytes32 hash,
        bytes calldata signature,
        bytes32 nameHash,
        bytes32 versionHash,
        address account
    ) internal view returns (bytes32) {
        uint256 length = signature.length;
        if (length <= TYPED_OVERHEAD) return bytes32(0);
        uint256 descLength = uint16(bytes2(signature[length - 2:]));
        if (descLength == 0 || length != TYPED_OVERHEAD + descLength) return bytes32(0);
        bytes32 appDomainSeparator = bytes32(signature[ECDSA_LENGTH:ECDSA_LENGTH + 32]);
        bytes32 contents = bytes32(signature[ECDSA_LENGTH + 32:ECDSA_LENGTH + 64]);
        if (keccak256(abi.encodePacked(hex"1901", appDomainSeparator, contents)) != hash) return bytes32(0);

        bytes calldata description = signature[ECDSA_LENGTH + 64:length - 2];
        (bytes calldata contentsName, bytes calldata contentsType) = _splitDescription(description);
        if (contentsType.length == 0 || !_safeName(contentsName)) return bytes32(0);

        bytes32 typeHash = keccak256(
            abi.encodePacked(
                "TypedDataSign(",
                contentsName,
                " contents,string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)",
                contentsType
            )
        );
        bytes32 structHash =
            keccak256(abi.encode(typeHash, contents, nameHash, versionHash, block.chainid, account, bytes32(0)));
        return keccak256(abi.encodePacked(hex"1901", appDomainSeparator, structHash));
    }

    /// (contentsName, contentsType) of a contentsDescription: implicit mode when it ends with ')'
    /// (the name is what precedes the first '('), else explicit mode (the name follows the last ')').
    function _splitDescription(bytes calldata d)
        private
        pure
        returns (bytes calldata contentsName, bytes calldata contentsType)
    {
        uint256 n = d.length;
        if (d[n - 1] == ")") {
            uint256 i = 0;
            while (i < n && d[i] != "(") i++;
            return (d[:i], d);
        }
        uint256 j = n;
        while (j > 0 && d[j - 1] != ")") j--;
        return (d[j:], d[:j]);
    }

    function _safeName(bytes calldata name) private pure returns (bool) {
        if (name.length == 0) return false;
        bytes1 first = name[0];
        if ((first >= "a" && first <= "z") || first == "(") return false;
        for (uint256 i = 0; i < name.length; i++) {
            bytes1 c = name[i];
            if (c == " " || c == "," || c == ")" || c == "(" || c == 0x00) return false;
        }
        return true;
    }
}
