"""Several real `bundler run --store postgres` processes on one PostgreSQL and one anvil that mines
a block every second, fresh funded (not yet deployed) SimpleAccounts with signed first ops, and
what the chain says afterwards: UserOperationEvent logs per op and the receipts of every bundle
transaction. Used by tests/e2e/test_multi_instance.py and benchmarks/multi_instance.py."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc
from bundler.entrypoint import V07, V08, EntryPointVersion
from bundler.userop import format_user_operation

from .accounts import USER_OPERATION_EVENT_TOPIC, DevChain, SimpleAccountHelper, wait_receipt
from .procs import BundlerProcess, RpcFailure, call


def block_time_chain(block_time: float = 1.0) -> DevChain:
    """A private anvil with the EntryPoints, mining a block every `block_time` seconds."""
    return DevChain.start(block_time=block_time)


def block_number(chain: DevChain) -> int:
    return int(rpc(chain.url, "eth_blockNumber", []), 16)


@dataclass
class FirstOp:
    """A signed op (RPC form) with nonce 0 and initCode for a fresh account."""

    acct: SimpleAccountHelper
    rpc_op: dict
    hash: str

    @property
    def ep(self) -> EntryPointVersion:
        return self.acct.ep


def fresh_account(chain: DevChain, ep: EntryPointVersion) -> SimpleAccountHelper:
    acct = SimpleAccountHelper.counterfactual(chain.url, ep, chain.factories[ep.version])
    rpc(chain.url, "anvil_setBalance", [acct.address, hex(10**18)])
    return acct


def first_op(chain: DevChain, acct: SimpleAccountHelper, fee: int = 2 * 10**9, tip: int = 10**9,
             nonce: int = 0, deployed: bool = False) -> FirstOp:
    """Each call gives another op (another random target) for the same sender and nonce; nonce 0
    of an account not deployed yet carries initCode."""
    target = "0x" + os.urandom(20).hex()
    op = acct.sign(acct.op(acct.execute(target, 1), nonce=nonce, with_init_code=nonce == 0 and not deployed,
                           max_fee_per_gas=fee, max_priority_fee_per_gas=tip), chain.chain_id)
    return FirstOp(acct, format_user_operation(op), "0x" + acct.ep.user_op_hash(op, chain.chain_id).hex())


def deployed_accounts(chain: DevChain, n: int) -> list[SimpleAccountHelper]:
    """n v0.7 SimpleAccounts deployed through the factory in one block, funded."""
    accts = [SimpleAccountHelper.counterfactual(chain.url, V07, chain.factories[V07.version]) for _ in range(n)]
    txs = [rpc(chain.url, "eth_sendTransaction", [{"from": ANVIL_ACCOUNT0, "to": a.factory, "gas": hex(1_000_000),
                                                   "data": "0x" + a.factory_data.hex()}]) for a in accts]
    for tx in txs:
        assert wait_receipt(chain.url, tx)["status"] == "0x1"
    for a in accts:
        rpc(chain.url, "anvil_setBalance", [a.address, hex(10**18)])
    return accts


def fresh_ops(chain: DevChain, n: int) -> list[FirstOp]:
    """n first ops of n fresh accounts, v0.7 and v0.8 in turn."""
    return [first_op(chain, fresh_account(chain, (V07, V08)[i % 2])) for i in range(n)]


def send(url: str, op: FirstOp, timeout: float = 60.0) -> str | RpcFailure:
    """The op hash if acknowledged, else the JSON-RPC error."""
    try:
        return call(url, "eth_sendUserOperation", op.rpc_op, op.ep.address, timeout=timeout)
    except RpcFailure as e:
        return e


def new_keys(chain: DevChain, n: int) -> list[str]:
    keys = ["0x" + os.urandom(32).hex() for _ in range(n)]
    for k in keys:
        rpc(chain.url, "anvil_setBalance", [Account.from_key(k).address, hex(100 * 10**18)])
    return keys


def start_instance(chain: DevChain, dsn: str, workdir: Path, keys: list[str], lease_s: float = 3.0,
                   *extra: str) -> BundlerProcess:
    """`bundler run --store postgres --bundle-mode auto` with these executor keys (through the
    environment, as are the DSN); its own data dir and log file under workdir."""
    data = workdir / f"data-{Account.from_key(keys[0]).address[2:10]}"
    data.mkdir(parents=True, exist_ok=True)
    return BundlerProcess(chain.url, data, ",".join(keys), "--store", "postgres", "--bundle-mode", "auto",
                          "--instance-lease-s", str(lease_s), *extra,
                          env={"BUNDLER_POSTGRES_DSN": dsn}, log_path=data / "bundler.log")


def addresses(keys: list[str]) -> set[str]:
    return {Account.from_key(k).address.lower() for k in keys}


def op_events(chain: DevChain, from_block: int = 0) -> Counter:
    """op hash -> number of UserOperationEvent logs for it (both EntryPoints)."""
    logs = rpc(chain.url, "eth_getLogs", [{"address": [V07.address, V08.address], "fromBlock": hex(from_block),
                                           "toBlock": "latest", "topics": [USER_OPERATION_EVENT_TOPIC]}], timeout=30)
    return Counter(log["topics"][1] for log in logs)


def bundle_receipts(chain: DevChain, from_block: int, executors: set[str]) -> list[dict]:
    """Receipts of every transaction sent by these executors since from_block."""
    out = []
    for n in range(from_block, block_number(chain) + 1):
        block = rpc(chain.url, "eth_getBlockByNumber", [hex(n), True])
        for tx in block["transactions"]:
            if (tx.get("from") or "").lower() in executors:
                out.append(rpc(chain.url, "eth_getTransactionReceipt", [tx["hash"]]))
    return out
