"""An executor key: signs bundle transactions and tracks its own nonce."""
from __future__ import annotations

import asyncio
from typing import Protocol

from eth_account import Account


class NonceSource(Protocol):
    async def get_nonce(self, address: str, tag: str = "pending") -> int: ...


class Executor:
    def __init__(self, private_key: str):
        self._account = Account.from_key(private_key)
        self.address: str = self._account.address.lower()
        self._nonce: int | None = None
        self.lock = asyncio.Lock()  # one bundle in flight per key

    def __repr__(self) -> str:  # never show the key
        return f"Executor({self.address})"

    async def next_nonce(self, node: NonceSource) -> int:
        if self._nonce is None:
            self._nonce = await node.get_nonce(self.address, "pending")
        return self._nonce

    def consumed(self, nonce: int) -> None:
        self._nonce = nonce + 1

    def forget_nonce(self) -> None:
        self._nonce = None

    def sign(self, tx: dict) -> bytes:
        return bytes(self._account.sign_transaction(tx).raw_transaction)
