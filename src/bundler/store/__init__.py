from .records import OpRecord, OpStatus, SessionActivity
from .memory import MemoryStore

__all__ = ["MemoryStore", "OpRecord", "OpStatus", "SessionActivity"]
