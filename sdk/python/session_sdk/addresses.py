"""Where SessionAccounts live and how to recognise one by its code: the CREATE2 (counterfactual)
address of a factory-made account, the ERC-1167 clone runtime and the EIP-7702 delegation code."""
from __future__ import annotations

from eth_abi import encode
from eth_hash.auto import keccak

from .types import lower_address

# the deterministic-deployment proxy (same address on every chain) the dev contracts are CREATE2'd through
CREATE2_DEPLOYER = "0x4e59b44847b379578588920ca78fbf26c0b4956c"
_CLONE_PREFIX = bytes.fromhex("363d3d373d3d3d363d73")
_CLONE_SUFFIX = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")
_EIP7702_PREFIX = bytes.fromhex("ef0100")


def clone_runtime_code(implementation: str) -> bytes:
    """The 45-byte ERC-1167 runtime of every factory-made account of `implementation`."""
    return _CLONE_PREFIX + bytes.fromhex(lower_address(implementation)[2:]) + _CLONE_SUFFIX


def delegation_code(implementation: str) -> bytes:
    """Code of an EOA delegated to `implementation` by EIP-7702."""
    return _EIP7702_PREFIX + bytes.fromhex(lower_address(implementation)[2:])


def implementation_of(code: bytes) -> str | None:
    """The implementation behind an ERC-1167 clone or an EIP-7702 delegation, else None. The
    caller checks the result against the SessionAccount implementations it knows."""
    if len(code) == 45 and code.startswith(_CLONE_PREFIX) and code.endswith(_CLONE_SUFFIX):
        return "0x" + code[10:30].hex()
    if len(code) == 23 and code.startswith(_EIP7702_PREFIX):
        return "0x" + code[3:].hex()
    return None


def create2_address(deployer: str, salt: bytes, init_code: bytes) -> str:
    """EIP-1014: the address CREATE2 from `deployer` with a 32-byte `salt` gives `init_code`."""
    if len(salt) != 32:
        raise ValueError("a CREATE2 salt is 32 bytes")
    raw = keccak(b"\xff" + bytes.fromhex(lower_address(deployer)[2:]) + salt + keccak(init_code))
    return "0x" + raw[12:].hex()


def account_address(factory: str, implementation: str, owner: str, salt: int, proxy_creation_code: bytes) -> str:
    """Counterfactual address of SessionAccountFactory(factory).createAccount(owner, salt);
    proxy_creation_code = build artifact SessionAccountProxy.bytecode."""
    init_code = proxy_creation_code + encode(["address", "address"], [lower_address(implementation), lower_address(owner)])
    return create2_address(factory, salt.to_bytes(32, "big"), init_code)
