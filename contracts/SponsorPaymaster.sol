// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IPaymaster} from "@account-abstraction/contracts-v07/interfaces/IPaymaster.sol";
import {PackedUserOperation} from "@account-abstraction/contracts-v07/interfaces/PackedUserOperation.sol";
import {IStakeManager} from "@account-abstraction/contracts-v07/interfaces/IStakeManager.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {UserOperationLib as UserOperationLibV09} from "@account-abstraction/contracts-v09/core/UserOperationLib.sol";

/// The bundler's verifying paymaster: it pays for a UserOperation when the paymaster signer
/// (the bundler's sponsorship service, src/bundler/paymaster/) signed that op's fields together
/// with the chain id, the EntryPoint, this paymaster's address, a validity window and an
/// optional cap on the op's maximum cost.
///
/// paymasterAndData = paymaster (20) | paymasterVerificationGasLimit (16) | paymasterPostOpGasLimit (16)
///                  | validUntil (6) | validAfter (6) | costLimit (16, 0: none)
///                  | prefixLength (1) | signaturePrefix (prefixLength) | signature (65)
///
/// EntryPoint v0.9 also takes the signature outside the userOpHash, as its paymasterSignature
/// suffix: ... | signaturePrefix | signature (65) | uint16(65) | PAYMASTER_SIG_MAGIC (8), so the
/// account may sign before the paymaster does. Both layouts are accepted on every version (the
/// suffix is detected as the v0.9 EntryPoint detects it); the signed digest is the same.
///
/// signaturePrefix: the account's own signature (userOp.signature) must start with these bytes,
/// e.g. SessionAccount's mode 0x01 + session key, so a sponsorship granted to one session key
/// cannot be used by the owner or another key signing the same op. Empty: any signature.
///
/// The signature is EIP-191 (personal_sign) over getHash(op, validUntil, validAfter, costLimit).
/// The PackedUserOperation struct is the same for EntryPoint v0.7, v0.8 and v0.9, so one
/// contract serves all three: deploy one per EntryPoint.
///
/// ERC-7562: validation reads no storage (the signer is immutable, in the code), uses no
/// banned opcode (the window goes back in validationData, not through TIMESTAMP) and returns
/// no context, so the paymaster works unstaked (a context needs a staked paymaster).
contract SponsorPaymaster is IPaymaster {
    uint256 private constant VALID_UNTIL_OFFSET = 52;
    uint256 private constant VALID_AFTER_OFFSET = 58;
    uint256 private constant COST_LIMIT_OFFSET = 64;
    uint256 private constant PREFIX_LENGTH_OFFSET = 80;
    uint256 private constant PREFIX_OFFSET = 81;
    uint256 private constant SIGNATURE_LENGTH = 65;

    address public immutable entryPoint;
    address public immutable signer;
    address public immutable owner;

    error NotFromEntryPoint();
    error NotOwner();
    error BadPaymasterData(uint256 length);
    error CostAboveSignedLimit(uint256 maxCost, uint256 costLimit);

    constructor(address entryPoint_, address signer_, address owner_) {
        entryPoint = entryPoint_;
        signer = signer_;
        owner = owner_;
    }

    /// The digest the paymaster signer signs (EIP-191 prefixed) for this op and these terms.
    /// Every op field but the two signatures is bound, including the paymaster gas limits.
    function getHash(
        PackedUserOperation calldata userOp,
        uint48 validUntil,
        uint48 validAfter,
        uint128 costLimit,
        bytes calldata signaturePrefix
    )
        public
        view
        returns (bytes32)
    {
        return keccak256(
            abi.encode(
                userOp.sender,
                userOp.nonce,
                keccak256(userOp.initCode),
                keccak256(userOp.callData),
                userOp.accountGasLimits,
                bytes32(userOp.paymasterAndData[20:VALID_UNTIL_OFFSET]),
                userOp.preVerificationGas,
                userOp.gasFees,
                block.chainid,
                entryPoint,
                address(this),
                validUntil,
                validAfter,
                costLimit,
                keccak256(signaturePrefix)
            )
        );
    }

    function validatePaymasterUserOp(PackedUserOperation calldata userOp, bytes32, uint256 maxCost)
        external
        view
        returns (bytes memory context, uint256 validationData)
    {
        if (msg.sender != entryPoint) revert NotFromEntryPoint();
        bytes calldata pnd = userOp.paymasterAndData;
        (bytes calldata terms, bytes calldata signature) = _split(pnd);
        uint256 prefixLength = uint8(terms[PREFIX_LENGTH_OFFSET]);
        if (terms.length != PREFIX_OFFSET + prefixLength) revert BadPaymasterData(pnd.length);
        uint48 validUntil = uint48(bytes6(terms[VALID_UNTIL_OFFSET:VALID_AFTER_OFFSET]));
        uint48 validAfter = uint48(bytes6(terms[VALID_AFTER_OFFSET:COST_LIMIT_OFFSET]));
        uint128 costLimit = uint128(bytes16(terms[COST_LIMIT_OFFSET:PREFIX_LENGTH_OFFSET]));
        bytes calldata prefix = terms[PREFIX_OFFSET:];
        if (costLimit != 0 && maxCost > costLimit) revert CostAboveSignedLimit(maxCost, costLimit);
        bytes32 digest =
            MessageHashUtils.toEthSignedMessageHash(getHash(userOp, validUntil, validAfter, costLimit, prefix));
        // OpenZeppelin's tryRecover: address(0) for a malleable (high s) or otherwise invalid one
        (address recovered,,) = ECDSA.tryRecoverCalldata(digest, signature);
        bool valid = recovered == signer
            && userOp.signature.length >= prefixLength
            && keccak256(userOp.signature[:prefixLength]) == keccak256(prefix);
        // bit 0: signature failed (also a mismatching account signature prefix: estimation with
        // a stub signature then still runs); then validUntil (bits 160..207), validAfter (208..255)
        validationData = (valid ? 0 : 1) | (uint256(validUntil) << 160) | (uint256(validAfter) << 208);
        context = "";
    }

    /// Never called: validation returns no context.
    function postOp(PostOpMode, bytes calldata, uint256, uint256) external view {
        if (msg.sender != entryPoint) revert NotFromEntryPoint();
    }

    /// (paymasterAndData up to the end of the terms, the paymaster signature): the signature is
    /// v0.9's paymasterSignature suffix when there is one, else the last 65 bytes.
    function _split(bytes calldata pnd) private pure returns (bytes calldata terms, bytes calldata signature) {
        uint256 suffixed = UserOperationLibV09.getPaymasterSignatureLength(pnd);
        uint256 end = pnd.length;
        if (suffixed != 0) {
            if (suffixed != SIGNATURE_LENGTH) revert BadPaymasterData(pnd.length);
            end -= UserOperationLibV09.PAYMASTER_SUFFIX_LEN;
        }
        if (end < PREFIX_OFFSET + SIGNATURE_LENGTH) revert BadPaymasterData(pnd.length);
        return (pnd[:end - SIGNATURE_LENGTH], pnd[end - SIGNATURE_LENGTH:end]);
    }

    // -- the deposit that pays for sponsored ops, and the stake (both held by the EntryPoint) --

    /// Anyone may add to the deposit.
    function deposit() external payable {
        IStakeManager(entryPoint).depositTo{value: msg.value}(address(this));
    }

    function getDeposit() external view returns (uint256) {
        return IStakeManager(entryPoint).balanceOf(address(this));
    }

    function withdrawTo(address payable to, uint256 amount) external {
        if (msg.sender != owner) revert NotOwner();
        IStakeManager(entryPoint).withdrawTo(to, amount);
    }

    function addStake(uint32 unstakeDelaySec) external payable {
        if (msg.sender != owner) revert NotOwner();
        IStakeManager(entryPoint).addStake{value: msg.value}(unstakeDelaySec);
    }

    function unlockStake() external {
        if (msg.sender != owner) revert NotOwner();
        IStakeManager(entryPoint).unlockStake();
    }

    function withdrawStake(address payable to) external {
        if (msg.sender != owner) revert NotOwner();
        IStakeManager(entryPoint).withdrawStake(to);
    }
}
