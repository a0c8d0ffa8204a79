"""Session keys for SessionAccount from a Python backend, without the bundler or py-evm.

    THE session encoding (the bundler imports these modules; one concern each):
    types        SessionSpec and its policies as dataclasses, their ABI tuples, encode/decode_spec
    rules        the contract's checks off-chain: check_spec, canonical words, period windows, max cost
    eip712       the enable message: typed-data JSON and its digests (eth-account's EIP-712)
    signatures   UserOperation.signature layouts (owner / session / enable), parse, raw-digest signing
    calldata     execute / executeBatch / grant / revoke / createAccount callData, decode_calls
    addresses    CREATE2 account address, clone and EIP-7702 delegation code
    events       SessionGranted / SessionRevoked / SessionUsed topics and log decoding
    reverts      the account's custom errors and decode_error

    userop       the UserOperation model and its JSON-RPC shape
    packing      packed form and the userOpHash of each EntryPoint version
    entrypoints  the EntryPoint versions (address + hash)
    policies     builders for every policy the account enforces
    client       JSON-RPC to the bundler, the node and an ERC-7677 paymaster (urllib3)
    account      SessionAccount: build, estimate, sign (owner / session / enable), send, wait
    serialize    the string an app hands its backend (serializeSession of the TypeScript SDK)
    errors       RpcError and the typed SessionRefusal
    erc1271      the owner's ERC-1271 signatures (ERC-7739 PersonalSign / TypedDataSign)

    relay        RelayClient of the bundler's session relay (/relay/v1: server-held session keys)
                 and its signed-request scheme
"""
from . import erc1271, policies
from .calldata import Call
from .types import ArgConstraint, CallPolicy, Condition, GasPolicy, Limit, LimitKind, SessionSpec, TransferPolicy, word
from .account import SessionAccount, SessionKey, enable_signature
from .client import BundlerClient, JsonRpc, PaymasterClient
from .relay import RelayClient, RelayError
from .entrypoints import V07, V08, V09, EntryPoint, entry_point
from .errors import RpcError, SessionRefusal
from .serialize import SessionGrant, deserialize_session, serialize_session
from .userop import UserOperation

__all__ = [
    "ArgConstraint", "BundlerClient", "Call", "CallPolicy", "Condition", "EntryPoint", "GasPolicy", "JsonRpc", "Limit", "LimitKind", "PaymasterClient",
    "RelayClient", "RelayError", "RpcError", "SessionAccount", "SessionGrant", "SessionKey", "SessionRefusal", "SessionSpec", "TransferPolicy",
    "UserOperation", "V07", "V08", "V09", "erc1271", "policies", "deserialize_session", "enable_signature", "entry_point",
    "serialize_session", "word",
]
