"""Deploy the EntryPoints (canonical addresses) and SimpleAccountFactories on a dev chain."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import rlp
from eth_abi import encode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from session_sdk.addresses import CREATE2_DEPLOYER, create2_address as _create2_address

from ..entrypoint import ALL, EntryPointVersion
from .anvil import ANVIL_ACCOUNT0, rpc

FACTORY_SALT = b"\x00" * 32


def create2_address(salt: bytes, init_code: bytes) -> str:
    """Where the deterministic deployer puts `init_code` with `salt`."""
    return _create2_address(CREATE2_DEPLOYER, salt, init_code)


@dataclass
class Deployment:
    entry_points: dict[str, str] = field(default_factory=dict)  # version -> address
    factories: dict[str, str] = field(default_factory=dict)  # version -> SimpleAccountFactory
    simple_7702_accounts: dict[str, str] = field(default_factory=dict)  # version -> Simple7702Account


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


def create_address(deployer: str, nonce: int) -> str:
    return "0x" + keccak(rlp.encode([bytes.fromhex(deployer[2:]), nonce]))[12:].hex()


def deploy_entry_point(url: str, ep: EntryPointVersion) -> str:
    init_code = bytes.fromhex(ep.artifact("EntryPoint")["bytecode"][2:])
    address = deploy_create2(url, ep.create2_salt, init_code)
    if address != ep.address:
        if ep.reproducible:
            raise RuntimeError(f"EntryPoint {ep.version} landed at {address}, expected {ep.address}")
        relocate_entry_point(url, ep, address)
    return ep.address


def relocate_entry_point(url: str, ep: EntryPointVersion, landed: str) -> None:
    """DEV CHAIN ONLY. The npm artifact of `ep` does not reproduce its canonical address through
    the CREATE2 deployer (v0.9.0-rc.1: no published salt does), so the EntryPoint deployed at
    `landed` is copied to the canonical address, where clients look for it. Its one immutable
    that names an address of its own is re-pointed: the SenderCreator it CREATEs first (nonce 1)
    is copied to the canonical EntryPoint's nonce-1 address with its own immutable entryPoint
    re-pointed too, which is also where EntryPointSimulations looks for it. The EIP-712 domain
    is recomputed by the contract itself (its cached address differs from address(this))."""
    if rpc(url, "eth_getCode", [ep.address, "latest"]) not in ("0x", "0x0"):
        return
    landed_b, canonical_b = bytes.fromhex(landed[2:]), bytes.fromhex(ep.address[2:])
    landed_creator = create_address(landed, 1)
    canonical_creator = create_address(ep.address, 1)
    ep_code = bytes.fromhex(rpc(url, "eth_getCode", [landed, "latest"])[2:])
    creator_code = bytes.fromhex(rpc(url, "eth_getCode", [landed_creator, "latest"])[2:])
    if not creator_code or bytes.fromhex(landed_creator[2:]) not in ep_code or landed_b not in creator_code:
        raise RuntimeError(f"EntryPoint {ep.version} at {landed}: its SenderCreator is not where expected")
    ep_code = ep_code.replace(bytes.fromhex(landed_creator[2:]), bytes.fromhex(canonical_creator[2:]))
    creator_code = creator_code.replace(landed_b, canonical_b)
    rpc(url, "anvil_setCode", [canonical_creator, "0x" + creator_code.hex()])
    rpc(url, "anvil_setCode", [ep.address, "0x" + ep_code.hex()])
    rpc(url, "anvil_setNonce", [ep.address, "0x2"])  # as if it had created its SenderCreator
    rpc(url, "evm_mine", [])


def deploy_simple_account_factory(url: str, ep: EntryPointVersion) -> str:
    bytecode = bytes.fromhex(ep.artifact("SimpleAccountFactory")["bytecode"][2:])
    return deploy_create2(url, FACTORY_SALT, bytecode + encode(["address"], [ep.address]))


def deploy_simple_7702_account(url: str, ep: EntryPointVersion) -> str | None:
    """The version's Simple7702Account at the address clients default to. DEV CHAIN ONLY for
    v0.9: npm 0.9.0-rc.1's Simple7702Account (constructor: the EntryPoint) does not land at
    viem's default address through the CREATE2 deployer, so its code (no immutable that names
    its own address) is copied there."""
    if ep.simple_7702_account is None:
        return None
    bytecode = bytes.fromhex(ep.artifact("Simple7702Account")["bytecode"][2:])
    landed = deploy_create2(url, FACTORY_SALT, bytecode + encode(["address"], [ep.address]))
    if landed != ep.simple_7702_account and rpc(url, "eth_getCode", [ep.simple_7702_account, "latest"]) in ("0x", "0x0"):
        rpc(url, "anvil_setCode", [ep.simple_7702_account, rpc(url, "eth_getCode", [landed, "latest"])])
        rpc(url, "evm_mine", [])
    return ep.simple_7702_account


def deploy_all(url: str) -> Deployment:
    out = Deployment()
    for ep in ALL:
        out.entry_points[ep.version] = to_checksum_address(deploy_entry_point(url, ep))
        out.factories[ep.version] = to_checksum_address(deploy_simple_account_factory(url, ep))
        delegate = deploy_simple_7702_account(url, ep)
        if delegate is not None:
            out.simple_7702_accounts[ep.version] = to_checksum_address(delegate)
    return out


def fund(url: str, address: str, wei: int) -> None:
    rpc(url, "anvil_setBalance", [address, hex(wei)])
    # anvil_set* changes state without a block; simulation reads state per block, so mine one
    rpc(url, "evm_mine", [])
