"""Entities for reputation and staking tests on anvil: TestAccount / TestPaymaster (contracts/
test/TestAccount.sol), stakes added by impersonating the entity, deposits drained by storage
writes, and ops for TestAccount whose first signature byte picks the validation outcome."""
from __future__ import annotations

from eth_abi import decode, encode

from bundler.contracts_build import load_contract
from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc
from bundler.entrypoint import EntryPointVersion
from bundler.sim.entrypoint_sim import deposit_slot
from bundler.userop import UserOperation

from .accounts import eth_call, mine, selector, send_tx

SEL_ADD_STAKE = selector("addStake(uint32)")
SEL_DEPOSIT = selector("deposit()")
SEL_GET_NONCE = selector("getNonce(address,uint192)")

PM_LIMITS = dict(paymaster_verification_gas_limit=100_000, paymaster_post_op_gas_limit=10_000)


def deploy_bytecode(url: str, bytecode: bytes, *args: tuple[str, object]) -> str:
    data = bytecode + (encode([t for t, _ in args], [v for _, v in args]) if args else b"")
    receipt = send_tx(url, ANVIL_ACCOUNT0, None, data, gas=10_000_000)
    assert receipt["status"] == "0x1", receipt
    return receipt["contractAddress"].lower()


def deploy(url: str, name: str, *args: tuple[str, object]) -> str:
    """One of our own contracts (build/contracts)."""
    return deploy_bytecode(url, bytes.fromhex(load_contract(name)["bytecode"][2:]), *args)


def make_account(url: str, ep: EntryPointVersion, balance: int = 10**18) -> str:
    address = deploy(url, "TestAccount", ("address", ep.address))
    rpc(url, "anvil_setBalance", [address, hex(balance)])
    mine(url)
    return address


def make_paymaster(url: str, ep: EntryPointVersion, deposit: int = 10**18) -> str:
    address = deploy(url, "TestPaymaster", ("address", ep.address))
    if deposit:
        send_tx(url, ANVIL_ACCOUNT0, address, SEL_DEPOSIT, value=deposit)
    return address


def add_stake(url: str, ep: EntryPointVersion, entity: str, stake: int = 10**18, delay: int = 86_400) -> None:
    """EntryPoint.addStake called by the entity itself (impersonated on anvil)."""
    rpc(url, "anvil_setBalance", [entity, hex(stake + 10**18)])
    receipt = send_tx(url, entity, ep.address, SEL_ADD_STAKE + encode(["uint32"], [delay]), value=stake,
                      impersonate=True)
    assert receipt["status"] == "0x1", receipt


def drain_deposit(url: str, ep: EntryPointVersion, entity: str) -> None:
    """Set the entity's EntryPoint deposit to 0 (first word of its DepositInfo)."""
    rpc(url, "anvil_setStorageAt", [ep.address, hex(deposit_slot(entity)), "0x" + "00" * 32])
    mine(url)


def ep_nonce(url: str, ep: EntryPointVersion, sender: str, key: int = 0) -> int:
    out = eth_call(url, ep.address, SEL_GET_NONCE + encode(["address", "uint192"], [sender, key]))
    return decode(["uint256"], out)[0]


def account_op(url: str, ep: EntryPointVersion, sender: str, signature: bytes = b"", *, key: int = 0,
               **changes) -> UserOperation:
    """An op for TestAccount (signature b"" accepts) at the next nonce of `key`."""
    values = dict(sender=sender, nonce=ep_nonce(url, ep, sender, key), call_data=b"", call_gas_limit=100_000,
                  verification_gas_limit=300_000, pre_verification_gas=60_000, max_fee_per_gas=2 * 10**9,
                  max_priority_fee_per_gas=10**9, signature=signature)
    values.update(changes)
    return UserOperation(**values)


def paymaster_op(url: str, ep: EntryPointVersion, sender: str, paymaster: str, **changes) -> UserOperation:
    return account_op(url, ep, sender, paymaster=paymaster, **PM_LIMITS, **changes)
