"""What one validation read from the node, to tell at bundle time whether it would read the same.

    reads = capture(db, ctx)                  # after simulate_validation, in the worker
    reads.reusable                            # False when it read the block context (TIMESTAMP, ...)
    unchanged(block_state, [reads, ...])      # one node batch, then True per set whose values match

A validation is a pure function of the state it read through the OverlayAccountDB (the fields
of each account its outcome can depend on: a balance it read or compared, not one it only paid
into or one a CALL without value read and ignored, as the EntryPoint's is; a nonce it read, not
one it only incremented; code it ran or inspected; and every storage slot it fell through to), of the
block context (coinbase, timestamp, number, prevrandao, gas limit, base fee, blob fee, block
hashes), of the coinbase (warm for every call since EIP-3651) and of the op itself. When the validation read no block context and every value it
read from the node is the same at a later block, simulating it there gives the same result and
the same trace, so the admission result can be reused. Anything else forces a new simulation.

Kept compactly on the pool entry (sim/types.py packs it into one bytes object): the keys (each
address once with 1 byte naming the fields read, each slot as its address's index + its key's bytes)
and one 32-byte digest of the values and of the block's coinbase, not the values themselves.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

from eth.vm.execution_context import ExecutionContext

from .state import BALANCE, CODE, NONCE, BlockState, OverlayAccountDB, code_hash
from .types import ReadSet  # noqa: F401  (defined there: the main process unpickles it without py-evm)


class WatchedExecutionContext(ExecutionContext):
    """py-evm's block context that notes whether the computation read any part of it that differs
    from block to block (the chain id does not). The coinbase is read by every call (EIP-3651
    makes it warm), so it is not noted here: the read set keeps it and compares it instead."""

    block_read = False

    @property
    def timestamp(self):
        self.block_read = True
        return self._timestamp

    @property
    def block_number(self):
        self.block_read = True
        return self._block_number

    @property
    def difficulty(self):
        self.block_read = True
        return self._difficulty

    @property
    def mix_hash(self):
        self.block_read = True
        return self._mix_hash

    @property
    def gas_limit(self):
        self.block_read = True
        return self._gas_limit

    @property
    def prev_hashes(self):
        self.block_read = True
        return self._prev_hashes

    @property
    def base_fee_per_gas(self):
        self.block_read = True
        return ExecutionContext.base_fee_per_gas.fget(self)  # type: ignore[attr-defined]

    @property
    def excess_blob_gas(self):
        self.block_read = True
        return ExecutionContext.excess_blob_gas.fget(self)  # type: ignore[attr-defined]


def _digest(base: BlockState, accounts: Sequence[bytes], fields: bytes,
            slots: Sequence[tuple[bytes, int]]) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    # the coinbase is warm for every call (EIP-3651): another one can change the gas a validation
    # uses, so it must be the same, as every value read must
    coinbase = base.block.coinbase.encode()
    h.update(bytes([len(coinbase)]) + coinbase)
    for address, read in zip(accounts, fields):
        balance, nonce, code = base.account(address)
        if read & BALANCE:
            h.update(balance.to_bytes(32, "big"))
        if read & NONCE:
            h.update(nonce.to_bytes(32, "big"))
        if read & CODE:
            h.update(code_hash(code))
    for address, slot in slots:
        h.update(base.storage_at(address, slot).to_bytes(32, "big"))
    return h.digest()


def capture(db: OverlayAccountDB, block_read: bool) -> ReadSet:
    """The read set of the simulation that ran on `db` (every value is in its BlockState's cache)."""
    read = db.fields_read
    accounts = sorted(a for a in db.base_accounts_read if read.get(a))
    fields = bytes(read[a] for a in accounts)
    slots = sorted(db.base_slots_read)
    return ReadSet.pack(accounts, fields, slots, _digest(db.base, accounts, fields, slots), block_read)


def unchanged(base: BlockState, read_sets: Sequence[ReadSet]) -> list[bool]:
    """Whether each set's values are the same in `base` (another block): everything not cached
    there yet is fetched in one node batch first."""
    keys = [(rs.account_keys(), rs.slot_keys()) for rs in read_sets]
    base.prefetch((a for accounts, _ in keys for a in accounts), (s for _, slots in keys for s in slots))
    return [rs.reusable and _digest(base, accounts, rs.fields, slots) == rs.digest
            for rs, (accounts, slots) in zip(read_sets, keys)]
