"""callData of SessionAccount (execute, executeBatch, grant and revoke) and of its factory
(createAccount), and the parse of the calls a session op makes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector as _selector

from .types import SESSION_SPEC_T, SessionSpec, encode_spec, lower_address

CALL_T = "(address,uint256,bytes)"

SEL_EXECUTE = _selector("execute(address,uint256,bytes)")
SEL_EXECUTE_BATCH = _selector(f"executeBatch({CALL_T}[])")
SEL_GRANT_SESSION = _selector(f"grantSession({SESSION_SPEC_T})")
SEL_REVOKE_SESSION = _selector("revokeSession(address)")
SEL_REVOKE_ALL_SESSIONS = _selector("revokeAllSessions()")
SEL_DEPOSIT_TO = _selector("depositTo(address)")
SEL_CREATE_ACCOUNT = _selector("createAccount(address,uint256)")
MAX_SESSION_CALLS = 256  # SessionAccount.MAX_SESSION_CALLS: most calls in one session op


@dataclass(frozen=True, slots=True)
class Call:
    target: str
    value: int = 0
    data: bytes = b""

    def to_abi(self) -> tuple:
        return (lower_address(self.target), self.value, bytes(self.data))


def encode_execute(target: str, value: int = 0, data: bytes = b"") -> bytes:
    return SEL_EXECUTE + encode(["address", "uint256", "bytes"], [lower_address(target), value, bytes(data)])


def encode_execute_batch(calls: Sequence[Call | tuple]) -> bytes:
    items = [c.to_abi() if isinstance(c, Call) else Call(*c).to_abi() for c in calls]
    return SEL_EXECUTE_BATCH + encode([f"{CALL_T}[]"], [items])


def decode_calls(call_data: bytes) -> list[Call]:
    """The calls an op's callData makes (execute: one, executeBatch: each). ValueError where a
    session op would revert SessionCallNotAllowed (or the contract's ABI decoder reverts)."""
    selector = bytes(call_data[:4])
    try:
        if selector == SEL_EXECUTE:
            target, value, data = decode(["address", "uint256", "bytes"], bytes(call_data[4:]))
            return [Call(target.lower(), value, data)]
        if selector == SEL_EXECUTE_BATCH:
            (items,) = decode([f"{CALL_T}[]"], bytes(call_data[4:]))
            return [Call(t.lower(), v, d) for t, v, d in items]
    except Exception as exc:
        raise ValueError(f"undecodable callData: {exc}") from None
    raise ValueError(f"callData selector 0x{selector.hex()} is neither execute nor executeBatch")


def encode_grant_session(spec: SessionSpec) -> bytes:
    return SEL_GRANT_SESSION + encode_spec(spec)


def encode_revoke_session(signer: str) -> bytes:
    return SEL_REVOKE_SESSION + encode(["address"], [lower_address(signer)])


def encode_revoke_all_sessions() -> bytes:
    return SEL_REVOKE_ALL_SESSIONS


def encode_create_account(owner: str, salt: int) -> bytes:
    """SessionAccountFactory.createAccount(owner, salt): the factoryData of a deploying op."""
    return SEL_CREATE_ACCOUNT + encode(["address", "uint256"], [lower_address(owner), salt])
