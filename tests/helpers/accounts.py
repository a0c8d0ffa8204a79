"""Real SimpleAccounts on a dev chain, and signed UserOperations for them (v0.7 and v0.8).

    acct = SimpleAccountHelper.create(url, V07, factory)            # deployed, owner key random
    acct = SimpleAccountHelper.counterfactual(url, V08, factory)     # not deployed: op gets initCode
    fund(url, acct.address, 10**18)
    op = acct.sign(acct.op(call_data=acct.execute(target, 0, b"")), chain_id)
    send_handle_ops(url, V07, [op], beneficiary)                     # real transaction

Signing: v0.7 SimpleAccount recovers the EIP-191 ("\\x19Ethereum Signed Message:\\n32")
hash of userOpHash; v0.8 SimpleAccount recovers the raw userOpHash (EIP-712 digest).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from eth_abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_hash.auto import keccak
from eth_utils import function_signature_to_4byte_selector

from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc
from bundler.entrypoint import EntryPointVersion
from bundler.userop import UserOperation, pack
from bundler.userop.packing import PACKED_USEROP_TYPE


selector = function_signature_to_4byte_selector


SEL_CREATE_ACCOUNT = selector("createAccount(address,uint256)")
SEL_GET_ADDRESS = selector("getAddress(address,uint256)")
SEL_EXECUTE = selector("execute(address,uint256,bytes)")
SEL_GET_NONCE = selector("getNonce(address,uint192)")
SEL_BALANCE_OF = selector("balanceOf(address)")
SEL_SENDER_CREATOR = selector("senderCreator()")
SEL_HANDLE_OPS = selector(f"handleOps({PACKED_USEROP_TYPE}[],address)")


def eth_call(url: str, to: str, data: bytes, block: str = "latest", sender: str | None = None) -> bytes:
    tx = {"to": to, "data": "0x" + data.hex()}
    if sender:
        tx["from"] = sender
    return bytes.fromhex(rpc(url, "eth_call", [tx, block])[2:])


def wait_receipt(url: str, tx_hash: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = rpc(url, "eth_getTransactionReceipt", [tx_hash])
        if receipt:
            return receipt
        time.sleep(0.02)
    raise TimeoutError(f"transaction {tx_hash} not mined")


def send_tx(url: str, sender: str, to: str, data: bytes, gas: int = 5_000_000, value: int = 0,
            impersonate: bool = False) -> dict:
    """eth_sendTransaction from an unlocked (or impersonated) account; returns the receipt."""
    if impersonate:
        rpc(url, "anvil_impersonateAccount", [sender])
    try:
        tx_hash = rpc(url, "eth_sendTransaction", [{
            "from": sender, "to": to, "data": "0x" + data.hex(), "gas": hex(gas), "value": hex(value),
        }])
        return wait_receipt(url, tx_hash)
    finally:
        if impersonate:
            rpc(url, "anvil_stopImpersonatingAccount", [sender])


def latest_block(url: str) -> dict:
    return rpc(url, "eth_getBlockByNumber", ["latest", False])


def entry_point_deposit(url: str, ep: EntryPointVersion, account: str) -> int:
    out = eth_call(url, ep.address, SEL_BALANCE_OF + encode(["address"], [account]))
    return decode(["uint256"], out)[0]


def sender_creator(url: str, ep: EntryPointVersion) -> str:
    """The EntryPoint's SenderCreator (CREATE address of the EntryPoint at nonce 1)."""
    import rlp

    return "0x" + keccak(rlp.encode([bytes.fromhex(ep.address[2:]), 1]))[12:].hex()


@dataclass
class SimpleAccountHelper:
    url: str
    ep: EntryPointVersion
    factory: str
    owner_key: str
    salt: int
    address: str  # lower-case

    @property
    def owner(self) -> str:
        return Account.from_key(self.owner_key).address

    @classmethod
    def counterfactual(cls, url: str, ep: EntryPointVersion, factory: str, owner_key: str | None = None,
                       salt: int = 0) -> "SimpleAccountHelper":
        owner_key = owner_key or "0x" + os.urandom(32).hex()
        owner = Account.from_key(owner_key).address
        out = eth_call(url, factory, SEL_GET_ADDRESS + encode(["address", "uint256"], [owner, salt]))
        address = decode(["address"], out)[0].lower()
        return cls(url, ep, factory.lower(), owner_key, salt, address)

    @classmethod
    def create(cls, url: str, ep: EntryPointVersion, factory: str, owner_key: str | None = None,
               salt: int = 0) -> "SimpleAccountHelper":
        """Deploy through the factory. The v0.8 factory only accepts calls from the EntryPoint's
        SenderCreator, so that one is impersonated on anvil."""
        acct = cls.counterfactual(url, ep, factory, owner_key, salt)
        if ep.version == "0.7":
            send_tx(url, ANVIL_ACCOUNT0, acct.factory, acct.factory_data)
        else:
            creator = sender_creator(url, ep)
            rpc(url, "anvil_setBalance", [creator, hex(10**18)])
            send_tx(url, creator, acct.factory, acct.factory_data, impersonate=True)
        if rpc(url, "eth_getCode", [acct.address, "latest"]) in ("0x", ""):
            raise RuntimeError(f"SimpleAccount {acct.address} was not deployed")
        return acct

    @property
    def factory_data(self) -> bytes:
        return SEL_CREATE_ACCOUNT + encode(["address", "uint256"], [self.owner, self.salt])

    def is_deployed(self) -> bool:
        return rpc(self.url, "eth_getCode", [self.address, "latest"]) not in ("0x", "")

    def nonce(self, key: int = 0) -> int:
        out = eth_call(self.url, self.ep.address, SEL_GET_NONCE + encode(["address", "uint192"], [self.address, key]))
        return decode(["uint256"], out)[0]

    @staticmethod
    def execute(target: str, value: int = 0, data: bytes = b"") -> bytes:
        return SEL_EXECUTE + encode(["address", "uint256", "bytes"], [target, value, data])

    def op(self, call_data: bytes = b"", *, nonce: int | None = None, with_init_code: bool | None = None,
           verification_gas_limit: int = 500_000, call_gas_limit: int = 200_000,
           pre_verification_gas: int = 60_000, max_fee_per_gas: int = 2 * 10**9,
           max_priority_fee_per_gas: int = 10**9, **changes) -> UserOperation:
        """An unsigned op (dummy signature). initCode is added when the account is not deployed."""
        if with_init_code is None:
            with_init_code = not self.is_deployed()
        op = UserOperation(
            sender=self.address,
            nonce=self.nonce() if nonce is None else nonce,
            call_data=call_data,
            call_gas_limit=call_gas_limit,
            verification_gas_limit=verification_gas_limit,
            pre_verification_gas=pre_verification_gas,
            max_fee_per_gas=max_fee_per_gas,
            max_priority_fee_per_gas=max_priority_fee_per_gas,
            signature=DUMMY_SIGNATURE,
            factory=self.factory if with_init_code else None,
            factory_data=self.factory_data if with_init_code else b"",
        )
        return op.with_changes(**changes) if changes else op

    def sign(self, op: UserOperation, chain_id: int, key: str | None = None) -> UserOperation:
        return op.with_changes(signature=sign_user_op(op, self.ep, chain_id, key or self.owner_key))


# A well-formed ECDSA signature that recovers to some unrelated address (SimpleAccount then
# returns SIG_VALIDATION_FAILED instead of reverting; good for estimation).
DUMMY_SIGNATURE = bytes.fromhex("f" * 31 + "0" * 33 + "7" + "a" * 63 + "1c")


def sign_user_op(op: UserOperation, ep: EntryPointVersion, chain_id: int, key: str) -> bytes:
    h = ep.user_op_hash(op, chain_id)
    if ep.version == "0.7":
        signed = Account.sign_message(encode_defunct(primitive=h), key)
    else:
        signed = Account.unsafe_sign_hash(h, key)
    return bytes(signed.signature)


def handle_ops_data(ops: list[UserOperation], beneficiary: str) -> bytes:
    return SEL_HANDLE_OPS + encode([f"{PACKED_USEROP_TYPE}[]", "address"], [[pack(op) for op in ops], beneficiary])


def send_handle_ops(url: str, ep: EntryPointVersion, ops: list[UserOperation], beneficiary: str,
                    sender: str = ANVIL_ACCOUNT0, gas: int = 10_000_000) -> dict:
    """A real handleOps transaction; returns the receipt (status may be 0x0)."""
    return send_tx(url, sender, ep.address, handle_ops_data(ops, beneficiary), gas=gas)


USER_OPERATION_EVENT_TOPIC = "0x" + keccak(
    b"UserOperationEvent(bytes32,address,address,uint256,bool,uint256,uint256)").hex()


def user_operation_events(receipt: dict) -> list[dict]:
    """Decoded UserOperationEvent logs of a receipt."""
    out = []
    for log in receipt.get("logs", []):
        if log["topics"] and log["topics"][0] == USER_OPERATION_EVENT_TOPIC:
            nonce, success, cost, gas_used = decode(
                ["uint256", "bool", "uint256", "uint256"], bytes.fromhex(log["data"][2:]))
            out.append({"userOpHash": log["topics"][1], "sender": "0x" + log["topics"][2][26:],
                        "nonce": nonce, "success": success, "actualGasCost": cost,
                        "actualGasUsed": gas_used})
    return out


def mine(url: str) -> None:
    """Mine a block, so state changed by anvil_set* is at a new block number (the simulator
    caches state per pinned block)."""
    rpc(url, "evm_mine", [])


@dataclass
class DevChain:
    """A private anvil with both EntryPoints and SimpleAccountFactories (tests start their own,
    on a free port)."""

    node: object
    factories: dict

    @classmethod
    def start(cls, block_time: float | None = None) -> "DevChain":
        """block_time: mine a block every so many seconds instead of one per transaction."""
        from bundler.devchain import deploy_all, start_anvil

        node = start_anvil(block_time=block_time)
        try:
            deployment = deploy_all(node.url)
        except BaseException:
            node.stop()
            raise
        return cls(node, {v: f.lower() for v, f in deployment.factories.items()})

    @property
    def url(self) -> str:
        return self.node.url

    @property
    def chain_id(self) -> int:
        return self.node.chain_id

    def stop(self) -> None:
        self.node.stop()

    def account(self, ep: EntryPointVersion, *, deployed: bool = True, funded: int = 10**18) -> SimpleAccountHelper:
        factory = self.factories[ep.version]
        if deployed:
            acct = SimpleAccountHelper.create(self.url, ep, factory)
        else:
            acct = SimpleAccountHelper.counterfactual(self.url, ep, factory)
        if funded:
            rpc(self.url, "anvil_setBalance", [acct.address, hex(funded)])
        mine(self.url)
        return acct

    def pinned(self):
        from bundler.sim import PinnedBlock

        return PinnedBlock.from_rpc(latest_block(self.url))
