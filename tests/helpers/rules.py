"""ERC-7562 test entities (contracts/test/rules/RulesEntity.sol) on a dev chain.

    world = RulesWorld(url, chain_id, ep)
    acct = world.entity()                              # a deployed RulesEntity, funded
    op = world.op(acct, world.payload("TIMESTAMP"))    # the account uses TIMESTAMP
    pm = world.entity(paymaster=True)                  # deposited at the EntryPoint
    op = world.op(acct, paymaster=pm, pm_payload=world.payload("SLOAD_OWN"))
    f = world.factory(staked=True)
    op = world.deploy_op(f, factory_payload=..., account_payload=...)
    world.stake(pm)                                    # 1 ETH, 1 day, via EntryPoint.addStake
"""
from __future__ import annotations

import itertools
import os

from eth_abi import decode, encode

from bundler.contracts_build import load_contract
from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc
from bundler.entrypoint import EntryPointVersion
from bundler.userop import UserOperation

from .accounts import eth_call, mine, selector, send_tx

SEL_ADD_STAKE = selector("addStake(address,uint32)")
SEL_DEPOSIT = selector("deposit(address)")
SEL_SET_BALANCE = selector("setBalance(address,uint256)")
SEL_CREATE_ACCOUNT = selector("createAccount(uint256,bytes)")
SEL_GET_ADDRESS = selector("getAddress(uint256)")
SEL_GET_ADDRESS_WITH_PAYLOAD = selector("getAddress(uint256,bytes)")
SEL_GET_NONCE = selector("getNonce(address,uint192)")

HOW = {"direct": 0, "call": 1, "delegatecall": 2}
_salts = itertools.count(int.from_bytes(os.urandom(4), "big") << 32)


def deploy(url: str, name: str, ctor: bytes = b"") -> str:
    art = load_contract(name)
    receipt = send_tx(url, ANVIL_ACCOUNT0, None, bytes.fromhex(art["bytecode"][2:]) + ctor)
    if receipt["status"] != "0x1":
        raise RuntimeError(f"deploying {name} failed")
    return receipt["contractAddress"].lower()


class RulesWorld:
    def __init__(self, url: str, chain_id: int, ep: EntryPointVersion):
        self.url = url
        self.chain_id = chain_id
        self.ep = ep
        self.helper = self.entity(funded=True)

    # -- contracts --
    def entity(self, *, funded: bool = True, paymaster: bool = False) -> str:
        """A fresh RulesEntity (account and/or paymaster); with paymaster=True it gets an
        EntryPoint deposit."""
        address = deploy(self.url, "RulesEntity")
        if funded:
            rpc(self.url, "anvil_setBalance", [address, hex(10**18)])
        if paymaster:
            send_tx(self.url, ANVIL_ACCOUNT0, address, SEL_DEPOSIT + encode(["address"], [self.ep.address]),
                    value=10**18)
        mine(self.url)
        return address

    def factory(self, *, staked: bool = False) -> str:
        address = deploy(self.url, "RulesFactory", encode(["address"], [self.ep.address]))
        if staked:
            self.stake(address)
        return address

    def self_funding_factory(self, *, staked: bool = False) -> str:
        """A factory whose accounts run a command in their constructor (RulesSelfFundedEntity)."""
        address = deploy(self.url, "RulesSelfFundingFactory", encode(["address"], [self.ep.address]))
        if staked:
            self.stake(address)
        return address

    def stake(self, entity: str, value: int = 10**18, delay: int = 86_400) -> None:
        send_tx(self.url, ANVIL_ACCOUNT0, entity, SEL_ADD_STAKE + encode(["address", "uint32"], [self.ep.address, delay]),
                value=value)
        mine(self.url)

    def set_balance_slot(self, contract: str, who: str, value: int = 1) -> None:
        """contract.balances[who] = value (a storage slot associated with `who`)."""
        send_tx(self.url, ANVIL_ACCOUNT0, contract, SEL_SET_BALANCE + encode(["address", "uint256"], [who, value]))
        mine(self.url)

    # -- payloads and ops --
    def payload(self, command: str = "", how: str = "direct", target: str | None = None) -> bytes:
        target = target or self.helper
        return bytes([HOW[how]]) + bytes.fromhex(target[2:]) + command.encode()

    def nonce(self, sender: str) -> int:
        out = eth_call(self.url, self.ep.address, SEL_GET_NONCE + encode(["address", "uint192"], [sender, 0]))
        return decode(["uint256"], out)[0]

    def op(self, sender: str, payload: bytes = b"", *, paymaster: str | None = None, pm_payload: bytes = b"",
           **changes) -> UserOperation:
        values = dict(
            sender=sender, nonce=self.nonce(sender), call_data=b"", call_gas_limit=0,
            verification_gas_limit=1_000_000, pre_verification_gas=80_000,
            max_fee_per_gas=3 * 10**9, max_priority_fee_per_gas=10**9, signature=payload,
        )
        if paymaster:
            values.update(paymaster=paymaster, paymaster_verification_gas_limit=1_000_000,
                          paymaster_post_op_gas_limit=0, paymaster_data=pm_payload)
        values.update(changes)
        return UserOperation(**values)

    def deploy_op(self, factory: str, *, factory_payload: bytes = b"", account_payload: bytes = b"",
                  **changes) -> UserOperation:
        """An op deploying a new RulesEntity through `factory` (the sender gets a balance for the
        prefund)."""
        salt = next(_salts)
        out = eth_call(self.url, factory, SEL_GET_ADDRESS + encode(["uint256"], [salt]))
        sender = decode(["address"], out)[0].lower()
        rpc(self.url, "anvil_setBalance", [sender, hex(10**18)])
        mine(self.url)
        data = SEL_CREATE_ACCOUNT + encode(["uint256", "bytes"], [salt, factory_payload])
        changes.setdefault("verification_gas_limit", 4_000_000)  # deploying RulesEntity (~8 kB)
        return self.op(sender, account_payload, factory=factory, factory_data=data, **changes)

    def self_funded_deploy_op(self, factory: str, constructor_payload: bytes, **changes) -> UserOperation:
        """An op deploying a RulesSelfFundedEntity whose constructor runs `constructor_payload`
        (in the factory phase, at the sender's address; the sender has a balance)."""
        salt = next(_salts)
        out = eth_call(self.url, factory, SEL_GET_ADDRESS_WITH_PAYLOAD + encode(["uint256", "bytes"],
                                                                              [salt, constructor_payload]))
        sender = decode(["address"], out)[0].lower()
        rpc(self.url, "anvil_setBalance", [sender, hex(10**18)])
        mine(self.url)
        data = SEL_CREATE_ACCOUNT + encode(["uint256", "bytes"], [salt, constructor_payload])
        changes.setdefault("verification_gas_limit", 4_000_000)
        return self.op(sender, b"", factory=factory, factory_data=data, **changes)
