"""Node state for py-evm: a per-block read cache and a journaled in-memory overlay.

    BlockState      what the node says at the pinned block: accounts (balance, nonce, code)
                    fetched in one JSON-RPC batch on first touch, storage slots on demand.
                    Shared by every simulation of one block in a worker; never written to.
    OverlayAccountDB  py-evm's AccountDatabaseAPI on top of a BlockState. All writes (and
                    state overrides) live here, with an undo journal for py-evm's
                    snapshot/revert/commit; one per simulation, thrown away afterwards.

There is no trie: state roots are meaningless here and never computed.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from eth.abc import AccountDatabaseAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.db.journal import get_next_checkpoint
from eth.typing import JournalDBCheckpoint
from eth_hash.auto import keccak

from ..chain.sync_reader import NodeReader
from .types import AccountOverride, PinnedBlock

_EMPTY = (0, 0, b"")
_MISSING = object()

# the fields of an account a computation observed (OverlayAccountDB.fields_read, sim/readset.py)
BALANCE, NONCE, CODE = 1, 2, 4

# Code objects are interned across blocks, so a contract whose code did not change keeps the
# same bytes object; per-code caches (code hash, jump destinations) are keyed by it.
_CODE_INTERN: dict[bytes, bytes] = {}
_CODE_HASH: dict[bytes, bytes] = {}
_INTERN_LIMIT = 4096


def intern_code(code: bytes) -> bytes:
    if not code:
        return b""
    found = _CODE_INTERN.get(code)
    if found is not None:
        return found
    if len(_CODE_INTERN) >= _INTERN_LIMIT:
        _CODE_INTERN.clear()
        _CODE_HASH.clear()
    _CODE_INTERN[code] = code
    return code


def code_hash(code: bytes) -> bytes:
    if not code:
        return EMPTY_SHA3
    h = _CODE_HASH.get(code)
    if h is None:
        h = _CODE_HASH[code] = keccak(code)
    return h


def _hex_address(address: bytes) -> str:
    return "0x" + address.hex()


MAX_HINTS = 32  # accounts carried over as prefetch hints from one block to the next


class BlockState:
    """Read-through cache of the node's state at one pinned block."""

    def __init__(self, reader: NodeReader | None, block: PinnedBlock):
        self.reader = reader
        self.block = block
        self.tag = block.tag
        self.accounts: dict[bytes, tuple[int, int, bytes]] = {}
        self.storage: dict[bytes, dict[int, int]] = {}
        self.fetches = 0  # node round trips made for this block
        # accounts the simulations needed beyond the prefetched ones (an account's implementation
        # behind its ERC-1967 slot, precompiles): the next block's first batch fetches them too
        self.on_demand: dict[bytes, None] = {}
        self.hints: tuple[bytes, ...] = ()  # the previous block's on_demand, for the first batch
        self._hinted: set[bytes] = set()  # hints fetched and not read yet

    @property
    def key(self) -> tuple[int, bytes]:
        return self.block.cache_key

    def account(self, address: bytes) -> tuple[int, int, bytes]:
        acct = self.accounts.get(address)
        if acct is None:
            if len(self.on_demand) < MAX_HINTS:
                self.on_demand[address] = None
            self.prefetch((address,), ())
            acct = self.accounts[address]
        elif address in self._hinted:  # a hint that served: hint it to the next block again
            self._hinted.discard(address)
            if len(self.on_demand) < MAX_HINTS:
                self.on_demand[address] = None
        return acct

    def storage_at(self, address: bytes, slot: int) -> int:
        slots = self.storage.get(address)
        if slots is None:
            slots = self.storage[address] = {}
        else:
            value = slots.get(slot)
            if value is not None:
                return value
        if self.reader is None:
            value = 0
        else:
            self.fetches += 1
            value = self.reader.get_storage(_hex_address(address), slot, self.tag)
        slots[slot] = value
        return value

    def prefetch(self, addresses: Iterable[bytes], slots: Iterable[tuple[bytes, int]]) -> None:
        """Fetch the accounts and slots not cached yet, all in one batch."""
        if self.hints:
            self._hinted = {a for a in self.hints if a not in self.accounts}
            addresses, self.hints = (*addresses, *self.hints), ()
        want_accounts = [a for a in dict.fromkeys(addresses) if a not in self.accounts]
        want_slots = [
            (a, s) for a, s in dict.fromkeys(slots) if s not in self.storage.get(a, ())
        ]
        if not want_accounts and not want_slots:
            return
        if self.reader is None:
            fetched = [_EMPTY] * len(want_accounts)
            values = [0] * len(want_slots)
        else:
            self.fetches += 1
            fetched, values = self.reader.get_accounts_and_storage(
                [_hex_address(a) for a in want_accounts],
                [(_hex_address(a), s) for a, s in want_slots],
                self.tag,
            )
        for address, (balance, nonce, code) in zip(want_accounts, fetched):
            self.accounts[address] = (balance, nonce, intern_code(code))
        for (address, slot), value in zip(want_slots, values):
            self.storage.setdefault(address, {})[slot] = value

    def seed_account(self, address: bytes, balance: int, nonce: int, code: bytes) -> None:
        """Pre-fill an account (tests, or data the caller already has for this block)."""
        self.accounts[address] = (balance, nonce, intern_code(code))


class OverlayAccountDB(AccountDatabaseAPI):
    """py-evm account database: reads fall through to a BlockState, writes stay here.

    Journaling is an undo log: record() remembers the log length under a fresh checkpoint id,
    discard() undoes entries back to it, commit() forgets the checkpoint (outer checkpoints
    can still undo everything).
    """

    def __init__(self, base: BlockState, overrides: Mapping[bytes, AccountOverride] | None = None):
        self._base = base
        self._accounts: dict[bytes, tuple[int, int, bytes]] = {}
        self._storage: dict[bytes, dict[int, int]] = {}
        self._wiped: set[bytes] = set()
        self._warm_addresses: set[bytes] = set()
        self._warm_slots: set[tuple[bytes, int]] = set()
        self._original: dict[tuple[bytes, int], int] = {}  # slot values at transaction start
        self._journal: list[tuple] = []
        self._checkpoints: dict[int, int] = {}
        # what fell through to the node's state (sim/readset.py: reuse at bundle time)
        self.base_accounts_read: set[bytes] = set()
        self.base_slots_read: set[tuple[bytes, int]] = set()
        # which fields of an account the computation's outcome can depend on (BALANCE | NONCE |
        # CODE): a field only moved blindly (a value paid into an account, a nonce incremented)
        # or set by an override is not one of them
        self.fields_read: dict[bytes, int] = {}
        self._overridden: dict[bytes, int] = {}
        # the CALL family reads the caller's balance also when it moves no value (and then
        # ignores it): executor.py names that caller here for its next balance read
        self.blind_balance_read: bytes | None = None
        if overrides:
            for address, ov in overrides.items():
                self.apply_override(address, ov)

    @property
    def base(self) -> BlockState:
        return self._base

    # -- overrides (outside any transaction, so not journaled) --
    def apply_override(self, address: bytes, ov: AccountOverride) -> None:
        balance, nonce, code = self._get(address)
        self._overridden[address] = self._overridden.get(address, 0) | (
            (BALANCE if ov.balance is not None else 0) | (NONCE if ov.nonce is not None else 0)
            | (CODE if ov.code is not None else 0))
        self._accounts[address] = (
            balance if ov.balance is None else ov.balance,
            nonce if ov.nonce is None else ov.nonce,
            code if ov.code is None else intern_code(ov.code),
        )
        if ov.state is not None:
            self._wiped.add(address)
            self._storage[address] = {k: v for k, v in ov.state.items()}
        elif ov.state_diff:
            self._storage.setdefault(address, {}).update(ov.state_diff)

    def override_code(self, address: bytes, code: bytes) -> None:
        balance, nonce, _ = self._get(address)
        self._overridden[address] = self._overridden.get(address, 0) | CODE
        self._accounts[address] = (balance, nonce, code)

    # -- state root: meaningless here --
    @property
    def state_root(self):
        return BLANK_ROOT_HASH

    @state_root.setter
    def state_root(self, value) -> None:
        pass

    def has_root(self, state_root: bytes) -> bool:
        return False

    def make_state_root(self):
        return BLANK_ROOT_HASH

    def persist(self):
        raise NotImplementedError("simulation state is never persisted")

    # -- accounts --
    def _get(self, address: bytes) -> tuple[int, int, bytes]:
        acct = self._accounts.get(address)
        if acct is None:
            self.base_accounts_read.add(address)
            acct = self._base.account(address)
        return acct

    def _put(self, address: bytes, acct: tuple[int, int, bytes]) -> None:
        self._journal.append((0, address, self._accounts.get(address)))
        self._accounts[address] = acct

    def _observe(self, address: bytes, fields: int) -> None:
        fields &= ~self._overridden.get(address, 0)
        if fields:
            self.fields_read[address] = self.fields_read.get(address, 0) | fields

    def get_balance(self, address: bytes) -> int:
        acct = self._get(address)
        if self.blind_balance_read == address:
            self.blind_balance_read = None
        else:
            self._observe(address, BALANCE)
        return acct[0]

    def delta_balance(self, address: bytes, delta: int) -> None:
        """A value paid in does not make the outcome depend on the balance it is added to; one
        paid out was checked against it first (and is noted anyway)."""
        balance, nonce, code = self._get(address)
        if delta < 0:
            self._observe(address, BALANCE)
        self._put(address, (balance + delta, nonce, code))

    def set_balance(self, address: bytes, balance: int) -> None:
        _, nonce, code = self._get(address)
        self._put(address, (balance, nonce, code))

    def get_nonce(self, address: bytes) -> int:
        acct = self._get(address)
        self._observe(address, NONCE)
        return acct[1]

    def set_nonce(self, address: bytes, nonce: int) -> None:
        balance, _, code = self._get(address)
        self._put(address, (balance, nonce, code))

    def increment_nonce(self, address: bytes) -> None:
        balance, nonce, code = self._get(address)
        self._put(address, (balance, nonce + 1, code))

    def get_code(self, address: bytes) -> bytes:
        acct = self._get(address)
        self._observe(address, CODE)
        return acct[2]

    def set_code(self, address: bytes, code: bytes) -> None:
        balance, nonce, _ = self._get(address)
        self._put(address, (balance, nonce, intern_code(code)))

    def get_code_hash(self, address: bytes):
        acct = self._get(address)
        self._observe(address, CODE)
        return code_hash(acct[2])

    def delete_code(self, address: bytes) -> None:
        balance, nonce, _ = self._get(address)
        self._put(address, (balance, nonce, b""))

    def account_has_code_or_nonce(self, address: bytes) -> bool:
        _, nonce, code = self._get(address)
        self._observe(address, CODE if code else CODE | NONCE)  # code alone decides when there is some
        return nonce != 0 or code != b""

    def delete_account(self, address: bytes) -> None:
        self.delete_storage(address)
        self._put(address, _EMPTY)

    # After EIP-161 an account exists iff it is not empty; a node cannot tell us more
    # without eth_getProof, and no rule after Spurious Dragon needs more.
    def account_exists(self, address: bytes) -> bool:
        return not self.account_is_empty(address)

    def touch_account(self, address: bytes) -> None:
        pass

    def account_is_empty(self, address: bytes) -> bool:
        acct = self._get(address)
        _, nonce, code = acct
        # what decided the answer: code, else code and nonce, else all three
        self._observe(address, CODE if code else CODE | NONCE if nonce else CODE | NONCE | BALANCE)
        return acct == _EMPTY

    # -- storage --
    def get_storage(self, address: bytes, slot: int, from_journal: bool = True) -> int:
        if not from_journal:
            original = self._original.get((address, slot))  # ints only: None is "not written yet"
            if original is not None:
                return original
        slots = self._storage.get(address)
        if slots is not None:
            value = slots.get(slot)
            if value is not None:
                return value
        if address in self._wiped:
            return 0
        self.base_slots_read.add((address, slot))
        return self._base.storage_at(address, slot)

    def set_storage(self, address: bytes, slot: int, value: int) -> None:
        key = (address, slot)
        if key not in self._original:
            self._original[key] = self.get_storage(address, slot)
        slots = self._storage.get(address)
        if slots is None:
            slots = self._storage[address] = {}
        self._journal.append((1, address, slot, slots.get(slot, _MISSING)))
        slots[slot] = value

    def delete_storage(self, address: bytes) -> None:
        self._journal.append((2, address, address in self._wiped, self._storage.get(address)))
        self._wiped.add(address)
        self._storage[address] = {}

    # -- EIP-2929 access lists --
    def is_storage_warm(self, address: bytes, slot: int) -> bool:
        return (address, slot) in self._warm_slots

    def mark_storage_warm(self, address: bytes, slot: int) -> None:
        key = (address, slot)
        if key not in self._warm_slots:
            self._warm_slots.add(key)
            self._journal.append((3, key))

    def is_address_warm(self, address: bytes) -> bool:
        return address in self._warm_addresses

    def mark_address_warm(self, address: bytes) -> None:
        if address not in self._warm_addresses:
            self._warm_addresses.add(address)
            self._journal.append((4, address))

    # -- journal --
    def record(self) -> JournalDBCheckpoint:
        # py-evm's global counter: the transient storage journal gets the same ids and must
        # never see one it already used for its own root checkpoint
        checkpoint = get_next_checkpoint()
        self._checkpoints[checkpoint] = len(self._journal)
        return checkpoint

    def discard(self, checkpoint: JournalDBCheckpoint) -> None:
        target = self._checkpoints.pop(checkpoint)
        journal = self._journal
        accounts, storage = self._accounts, self._storage
        while len(journal) > target:
            entry = journal.pop()
            kind = entry[0]
            if kind == 0:
                _, address, previous = entry
                if previous is None:
                    del accounts[address]
                else:
                    accounts[address] = previous
            elif kind == 1:
                _, address, slot, previous = entry
                if previous is _MISSING:
                    del storage[address][slot]
                else:
                    storage[address][slot] = previous
            elif kind == 2:
                _, address, was_wiped, previous = entry
                if not was_wiped:
                    self._wiped.discard(address)
                if previous is None:
                    storage.pop(address, None)
                else:
                    storage[address] = previous
            elif kind == 3:
                self._warm_slots.discard(entry[1])
            else:
                self._warm_addresses.discard(entry[1])

    def commit(self, checkpoint: JournalDBCheckpoint) -> None:
        self._checkpoints.pop(checkpoint, None)
        if not self._checkpoints:
            self._journal.clear()

    def lock_changes(self) -> None:
        """End of a transaction: forget access lists and original values."""
        self._original.clear()
        self._warm_addresses.clear()
        self._warm_slots.clear()
        self._journal.clear()
        self._checkpoints.clear()

    # -- inspection (tests, tracer) --
    def dirty_storage(self) -> dict[bytes, dict[int, int]]:
        return self._storage

    def dirty_accounts(self) -> dict[bytes, tuple[int, int, bytes]]:
        return self._accounts
