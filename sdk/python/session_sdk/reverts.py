"""SessionAccount's custom errors: their argument types, selectors and the decoding of revert data."""
from __future__ import annotations

from dataclasses import dataclass

from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector

ERRORS: dict[str, list[str]] = {
    "NotFromEntryPoint": ["address"],
    "NotAuthorized": ["address"],
    "InitializeOnlyDuringConstruction": [],
    "InvalidOwner": [],
    "InvalidSignatureFormat": [],
    "InvalidSessionSpec": ["string"],
    "SessionEnableNonceMismatch": ["address", "uint64", "uint64"],
    "SessionUnknown": ["address"],
    "SessionIsRevoked": ["address"],
    "SessionPeriodOutsideWindow": ["address", "uint48"],
    "SessionUsageLimitReached": ["address", "uint32"],
    "SessionCallNotAllowed": ["bytes4"],
    "SessionSelfCallNotAllowed": ["uint256"],
    "SessionProtectedTarget": ["uint256", "address"],
    "SessionTooManyCalls": ["uint256", "uint256"],
    "SessionPaymasterNotAllowed": ["address"],
    "SessionGasCostExceedsPerOp": ["uint256", "uint256"],
    "SessionDelegationNotAllowed": [],
    "SessionArgNotCanonical": ["uint256", "uint256", "uint256", "uint8", "bytes32"],
    "SessionInvalidCallData": ["uint256"],
    "SessionTransferNotAllowed": ["uint256", "address"],
    "SessionTransferExceedsPerUse": ["uint256", "uint256", "uint256", "uint256"],
    "SessionTargetNotAllowed": ["uint256", "address"],
    "SessionSelectorNotAllowed": ["uint256", "address", "bytes4"],
    "SessionValueExceedsPerUse": ["uint256", "uint256", "uint256", "uint256"],
    "SessionArgOutOfBounds": ["uint256", "uint256", "uint256", "uint256"],
    "SessionArgConstraintFailed": ["uint256", "uint256", "uint256", "uint8", "bytes32", "bytes32"],
    "SessionPeriodExpired": ["uint48", "uint48"],
    "SessionCumulativeLimitExceeded": ["uint256", "uint8", "uint256", "uint256", "uint256", "uint256", "uint256"],
}
ERROR_SELECTORS: dict[bytes, str] = {
    function_signature_to_4byte_selector(f"{n}({','.join(t)})"): n for n, t in ERRORS.items()}


@dataclass(frozen=True, slots=True)
class SessionAccountError:
    name: str
    args: tuple

    def __str__(self) -> str:
        return f"{self.name}({', '.join(a.hex() if isinstance(a, bytes) else str(a) for a in self.args)})"


def decode_error(data: bytes) -> SessionAccountError | None:
    """A SessionAccount custom error from revert data, or None if it is not one of ours."""
    name = ERROR_SELECTORS.get(bytes(data[:4]))
    if name is None:
        return None
    try:
        args = decode(ERRORS[name], bytes(data[4:]))
    except Exception:
        return None
    return SessionAccountError(name, tuple(a.lower() if isinstance(a, str) and a.startswith("0x") else a
                                           for a in args))
