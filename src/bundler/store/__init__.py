from .records import OpRecord, OpStatus
from .memory import MemoryStore

__all__ = ["MemoryStore", "OpRecord", "OpStatus"]
