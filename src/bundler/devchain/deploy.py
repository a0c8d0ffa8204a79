"""Deploy the EntryPoints (canonical addresses) and SimpleAccountFactories on a dev chain."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from eth_abi import encode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from ..entrypoint import ALL, EntryPointVersion
from .anvil import ANVIL_ACCOUNT0, rpc

CREATE2_DEPLOYER = "0x4e59b44847b379578588920ca78fbf26c0b4956c"
FACTORY_SALT = b"\x00" * 32


def create2_address(salt: bytes, init_code: bytes) -> str:
    raw = keccak(b"\xff" + bytes.fromhex(CREATE2_DEPLOYER[2:]) + salt + keccak(init_code))[12:]
    return "0x" + raw.hex()


@dataclass
class Deployment:
    entry_points: dict[str, str] = field(default_factory=dict)  # version -> address
    factories: dict[str, str] = field(default_factory=dict)  # version -> SimpleAccountFactory


def _wait_receipt(url: str, tx_hash: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = rpc(url, "eth_getTransactionReceipt", [tx_hash])
        if receipt:
            if receipt["status"] != "0x1":
                raise RuntimeError(f"deployment transaction {tx_hash} reverted")
            return receipt
        time.sleep(0.05)
    raise RuntimeError(f"deployment transaction {tx_hash} not mined")


def deploy_create2(url: str, salt: bytes, init_code: bytes, sender: str = ANVIL_ACCOUNT0) -> str:
    """Deploy through the deterministic deployer unless the code is already there."""
    address = create2_address(salt, init_code)
    if rpc(url, "eth_getCode", [address, "latest"]) not in ("0x", "0x0"):
        return address
    # anvil's dev accounts are unlocked; impersonate so any funded address works
    rpc(url, "anvil_impersonateAccount", [sender])
    tx_hash = rpc(url, "eth_sendTransaction", [{
        "from": sender,
        "to": CREATE2_DEPLOYER,
        "data": "0x" + (salt + init_code).hex(),
        "gas": hex(15_000_000),
    }])
    _wait_receipt(url, tx_hash)
    if rpc(url, "eth_getCode", [address, "latest"]) in ("0x", "0x0"):
        raise RuntimeError(f"CREATE2 deployment to {address} left no code")
    return address


def deploy_entry_point(url: str, ep: EntryPointVersion) -> str:
    init_code = bytes.fromhex(ep.artifact("EntryPoint")["bytecode"][2:])
    address = deploy_create2(url, ep.create2_salt, init_code)
    if address != ep.address:
        raise RuntimeError(f"EntryPoint {ep.version} landed at {address}, expected {ep.address}")
    return address


def deploy_simple_account_factory(url: str, ep: EntryPointVersion) -> str:
    bytecode = bytes.fromhex(ep.artifact("SimpleAccountFactory")["bytecode"][2:])
    return deploy_create2(url, FACTORY_SALT, bytecode + encode(["address"], [ep.address]))


def deploy_all(url: str) -> Deployment:
    out = Deployment()
    for ep in ALL:
        out.entry_points[ep.version] = to_checksum_address(deploy_entry_point(url, ep))
        out.factories[ep.version] = to_checksum_address(deploy_simple_account_factory(url, ep))
    return out


def fund(url: str, address: str, wei: int) -> None:
    rpc(url, "anvil_setBalance", [address, hex(wei)])
    # anvil_set* changes state without a block; simulation reads state per block, so mine one
    rpc(url, "evm_mine", [])
