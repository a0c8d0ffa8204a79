from __future__ import annotations

from typing import TYPE_CHECKING
from .base import ClaimLost, LeaseLost, SharedStore, Store, as_shared, ops_in_order
from .memory import MemoryStore
from .records import (
    Budget, InflightTx, OpRecord, OpStatus, ReputationRow, SessionActivity, Sponsorship, SponsorshipState, TxAttempt,
)

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Budget", "ClaimLost", "InflightTx", "LeaseLost", "MemoryStore", "OpRecord", "OpStatus", "ReputationRow", "SessionActivity", "SharedStore", "Sponsorship", "SponsorshipState", "Store", "TxAttempt",
           "as_shared", "open_store", "ops_in_order"]


def open_store(config: Config) -> Store:
    """The store named by config.store: 'sqlite' under config.data_dir, 'postgres' at
    config.postgres_dsn, or 'memory'."""
    kind = getattr(config, "store", "sqlite")
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(config.data_dir, synchronous=config.store_sync,
                           retention_s=config.op_retention_hours * 3600)
    if kind == "postgres":
        from .postgres import PostgresStore

        if not config.postgres_dsn:
            raise ValueError("--store postgres needs --postgres-dsn (or BUNDLER_POSTGRES_DSN)")
        return PostgresStore(config.postgres_dsn, retention_s=config.op_retention_hours * 3600,
                             lease_s=config.instance_lease_s)
    raise ValueError(f"unknown store {kind!r}")
