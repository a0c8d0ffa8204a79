"""EIP-7702 UserOperations (EntryPoint v0.8): check the authorization an op carries before it
is simulated with the delegation applied, find the delegate of an already delegated sender,
and turn the authorizations of a bundle into the type-4 transaction's authorizationList.

An authorization tuple (chain_id, address, nonce, y_parity, r, s) is valid for the sender when
- chain_id is 0 or this chain's id,
- nonce is the sender EOA's current transaction nonce (the chain skips the tuple otherwise, and
  the EntryPoint rejects the op: -32500, not an invalid parameter),
- the signature recovers to the sender over keccak(0x05 || rlp([chain_id, address, nonce]))
  with y_parity 0/1 and a low s (EIP-2), as EIP-7702 requires,
- the sender has no code, or a delegation designator (0xef0100 || address) only.
"""
from __future__ import annotations

import rlp
from coincurve import PublicKey
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from session_sdk.signatures import SECP256K1_HALF_N, SECP256K1_N, public_key_address

from ..chain.client import NodeClient
from ..errors import InvalidParams, ValidationRejected
from ..userop.model import Authorization, UserOperation

DELEGATION_PREFIX = b"\xef\x01\x00"
AUTHORIZATION_MAGIC = b"\x05"
# intrinsic gas charged per authorization tuple (PER_EMPTY_ACCOUNT_COST)
GAS_PER_AUTHORIZATION = 25_000


def authorization_hash(chain_id: int, address: str, nonce: int) -> bytes:
    return keccak(AUTHORIZATION_MAGIC + rlp.encode([chain_id, bytes.fromhex(address[2:]), nonce]))


def recover_authority(auth: Authorization) -> str | None:
    """The signer of the tuple, or None when the signature is malformed or not low-s."""
    if auth.y_parity not in (0, 1):
        return None
    if not (0 < auth.r < SECP256K1_N and 0 < auth.s <= SECP256K1_HALF_N):
        return None
    signature = auth.r.to_bytes(32, "big") + auth.s.to_bytes(32, "big") + bytes([auth.y_parity])
    try:
        public = PublicKey.from_signature_and_message(
            signature, authorization_hash(auth.chain_id, auth.address, auth.nonce), hasher=None
        )
    except Exception:
        return None
    return public_key_address(public.format(compressed=False))


def delegate_of(code: bytes) -> str | None:
    """The address an EIP-7702 delegation designator points to (None for any other code)."""
    if len(code) == 23 and code[:3] == DELEGATION_PREFIX:
        return "0x" + code[3:].hex()
    return None


def _cs(address: str) -> str:
    return to_checksum_address(address)


class Eip7702Checker:
    def __init__(self, node: NodeClient, chain_id: int):
        self.node = node
        self.chain_id = chain_id

    def check_signature(self, op: UserOperation) -> None:
        """What needs no node: chain id, delegate address, signature form and signer."""
        auth = op.eip7702_auth
        if auth is None:
            raise InvalidParams("missing eip7702Auth: an EIP-7702 op carries its authorization",
                                {"field": "eip7702Auth"})
        if auth.chain_id not in (0, self.chain_id):
            raise InvalidParams(
                f"invalid eip7702Auth.chainId: {auth.chain_id} is neither 0 nor this chain's id {self.chain_id}",
                {"field": "eip7702Auth.chainId"},
            )
        if int(auth.address, 16) == 0:
            raise InvalidParams(
                "invalid eip7702Auth.address: the zero address would remove the delegation, and the op "
                "needs account code", {"field": "eip7702Auth.address"},
            )
        if auth.y_parity not in (0, 1):
            raise InvalidParams(f"invalid eip7702Auth.yParity: {auth.y_parity} (must be 0 or 1)",
                                {"field": "eip7702Auth.yParity"})
        if not 0 < auth.s <= SECP256K1_HALF_N:
            raise InvalidParams("invalid eip7702Auth.s: not in the lower half of the curve order (EIP-2)",
                                {"field": "eip7702Auth.s"})
        if not 0 < auth.r < SECP256K1_N:
            raise InvalidParams("invalid eip7702Auth.r: out of range", {"field": "eip7702Auth.r"})
        signer = recover_authority(auth)
        if signer is None:
            raise InvalidParams("invalid eip7702Auth signature: no signer can be recovered from it",
                                {"field": "eip7702Auth"})
        if signer != op.sender:
            raise InvalidParams(
                f"invalid eip7702Auth: eip7702Auth signer {_cs(signer)} is not the sender {_cs(op.sender)}",
                {"field": "eip7702Auth", "signer": _cs(signer)},
            )

    async def delegate_for(self, op: UserOperation, block_tag: str) -> str | None:
        """Check an EIP-7702 op against the node's state at `block_tag`; return the delegate
        its userOpHash commits to (None for ops that are not EIP-7702 ones)."""
        auth = op.eip7702_auth
        if auth is None and not op.is_eip7702:
            return None
        if auth is not None:
            self.check_signature(op)
        code_hex, nonce_hex = await self.node.batch([
            ("eth_getCode", [op.sender, block_tag]),
            ("eth_getTransactionCount", [op.sender, block_tag]),
        ])
        code = bytes.fromhex(code_hex[2:])
        current = delegate_of(code)
        if code and current is None:
            raise InvalidParams(
                f"sender {_cs(op.sender)} has contract code: an EIP-7702 delegation applies to EOAs only",
                {"field": "eip7702Auth" if auth is not None else "factory"},
            )
        if auth is None:
            if current is None:
                raise InvalidParams(
                    f"factory 0x7702 without eip7702Auth: sender {_cs(op.sender)} has no EIP-7702 delegation; "
                    f"add the signed authorization as eip7702Auth",
                    {"field": "eip7702Auth"},
                )
            return current
        nonce = int(nonce_hex, 16)
        if auth.nonce != nonce:
            # not a malformed parameter: the chain would skip the tuple and the EntryPoint then
            # reject the op (no delegation), so it is a validation rejection (-32500)
            raise ValidationRejected(
                f"eip7702Auth.nonce {auth.nonce} is not the sender's current transaction nonce {nonce}: the "
                f"chain would skip the authorization and the EntryPoint reject the UserOperation",
                {"field": "eip7702Auth.nonce", "expected": hex(nonce)},
            )
        return auth.address

    async def bundle_authorizations(self, entries: list, block_tag: str) -> tuple[dict[str, dict], dict[str, str]]:
        """The authorizationList entries of a bundle (op hash -> tuple as eth_account signs it),
        and the entries that cannot go any more (their tuple went stale and the sender is not
        delegated to the op's delegate): op hash -> reason.

        A tuple whose nonce went stale while the sender already delegates to the same address
        (an earlier op of the sender set it) is left out: the delegation is in place."""
        with_auth = [e for e in entries if e.op.eip7702_auth is not None]
        if not with_auth:
            return {}, {}
        calls = []
        for e in with_auth:
            calls += [("eth_getCode", [e.op.sender, block_tag]),
                      ("eth_getTransactionCount", [e.op.sender, block_tag])]
        answers = await self.node.batch(calls)
        out: dict[str, dict] = {}
        invalid: dict[str, str] = {}
        for i, e in enumerate(with_auth):
            auth = e.op.eip7702_auth
            code, nonce = bytes.fromhex(answers[2 * i][2:]), int(answers[2 * i + 1], 16)
            if auth.nonce == nonce and (not code or delegate_of(code) is not None):
                out[e.hash] = {
                    "chainId": auth.chain_id, "address": _cs(auth.address), "nonce": auth.nonce,
                    "yParity": auth.y_parity, "r": auth.r, "s": auth.s,
                }
            elif delegate_of(code) != auth.address:
                invalid[e.hash] = (
                    f"eip7702Auth went stale: the sender's transaction nonce is now {nonce} (the authorization "
                    f"has {auth.nonce}) and the sender is not delegated to {_cs(auth.address)}"
                )
        return out, invalid
