"""Deploy SponsorPaymaster (contracts/) on a dev chain, one per EntryPoint, through the CREATE2
deployer, and fund its EntryPoint deposit. The address follows from the EntryPoint, the signer
and the owner, so `bundler dev` (fixed dev signer) gets the same addresses on every start."""
from __future__ import annotations

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from .. import contracts_build
from ..entrypoint import EntryPointVersion
from ..sessions.registry import DEV_SALT
from .anvil import ANVIL_ACCOUNT0, rpc
from .deploy import _wait_receipt, create2_address, deploy_create2

SEL_DEPOSIT = function_signature_to_4byte_selector("deposit()")


def paymaster_init_code(ep: EntryPointVersion, signer: str, owner: str) -> bytes:
    return contracts_build.bytecode("SponsorPaymaster") + encode(
        ["address", "address", "address"], [ep.address, signer, owner])


def paymaster_address(ep: EntryPointVersion, signer: str, owner: str, salt: bytes = DEV_SALT) -> str:
    return create2_address(salt, paymaster_init_code(ep, signer, owner))


def deploy_paymaster(url: str, ep: EntryPointVersion, signer: str, owner: str = ANVIL_ACCOUNT0,
                     salt: bytes = DEV_SALT) -> str:
    """Idempotent; returns the lower-case address."""
    return deploy_create2(url, salt, paymaster_init_code(ep, signer, owner)).lower()


def fund_paymaster(url: str, paymaster: str, wei: int, sender: str = ANVIL_ACCOUNT0) -> None:
    """Add `wei` to the paymaster's EntryPoint deposit (SponsorPaymaster.deposit())."""
    tx_hash = rpc(url, "eth_sendTransaction", [{
        "from": sender, "to": paymaster, "data": "0x" + SEL_DEPOSIT.hex(), "value": hex(wei), "gas": hex(200_000)}])
    _wait_receipt(url, tx_hash)
