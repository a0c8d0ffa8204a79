"""One int object per recent value for the quantities every pending op keeps (bounded)."""
from __future__ import annotations

# Gas limits and fees repeat across ops (one fee suggestion per block, one estimate per kind
# of op), and so do what validation derives from them (prefund, preOpGas, gas used), and every
# pending op keeps its values: one int object per recent value instead of a fresh 28-32 bytes
# per field per op (a saving only where values repeat; unique values cost the bounded table). Bounded (cleared when full); ints are immutable, so
# sharing one changes nothing but memory.
_SHARED_QUANTITIES: dict[int, int] = {}
_SHARED_QUANTITIES_MAX = 1024


def shared_quantity(n: int) -> int:
    """`n`, as the one int object handed out for that value while it is recent."""
    got = _SHARED_QUANTITIES.get(n)
    if got is None:
        if len(_SHARED_QUANTITIES) >= _SHARED_QUANTITIES_MAX:
            _SHARED_QUANTITIES.clear()
        got = _SHARED_QUANTITIES[n] = n
    return got
