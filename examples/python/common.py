"""What every backend example shares: arguments, the backend's own key (kept in a file with mode
0600, never on the command line or in the output), and one JSON line per step."""
from __future__ import annotations

import argparse
import json
import os
import sys

from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector as selector


def parse_args(*extra: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["keygen", "run"] + list(extra))
    p.add_argument("--bundler", required=True)
    p.add_argument("--node")
    p.add_argument("--token")
    p.add_argument("--key-file", required=True, help="the backend's session key (created by keygen)")
    p.add_argument("--session", help="the string the app handed over (serializeSession)")
    p.add_argument("--to")
    p.add_argument("--hashes", nargs="*", default=[])
    p.add_argument("--paymaster", help="an ERC-7677 paymaster service URL (bundler dev serves pm_* on its URL)")
    return p.parse_args()


def keygen(path: str) -> str:
    acct = Account.create()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("0x" + bytes(acct.key).hex())
    return acct.address


def load_key(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def emit(step: str, **details) -> None:
    print(json.dumps({"step": step, **details}), flush=True)


def fail(message: str) -> None:
    emit("error", message=message)
    sys.exit(1)


def mint(to: str, amount: int) -> bytes:
    return selector("mint(address,uint256)") + encode(["address", "uint256"], [to, amount])


def transfer(to: str, amount: int) -> bytes:
    return selector("transfer(address,uint256)") + encode(["address", "uint256"], [to, amount])


DEPOSIT = selector("deposit()")


def balance_of(node, token: str, who: str) -> int:
    out = node.eth_call(token, selector("balanceOf(address)") + encode(["address"], [who]))
    return int.from_bytes(out, "big")


def eth_balance(node, address: str) -> int:
    return int(node.call("eth_getBalance", address, "latest"), 16)


def deposit_of(account) -> int:
    """The account's EntryPoint deposit (what it prepaid for gas)."""
    out = account.node.eth_call(account.entry_point.address, selector("balanceOf(address)") + encode(["address"], [account.address]))
    return int.from_bytes(out, "big")
