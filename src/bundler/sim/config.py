"""What the main process hands the simulation workers: their configuration and gas policy, and
the type of a tracer recipe. No py-evm here (the main process never imports it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, TypeAlias

from .types import ZERO_ADDRESS

if TYPE_CHECKING:
    from .executor import Tracer


@dataclass(frozen=True)
class GasPolicy:
    """Limits for the measuring run and buffers on the proposed limits."""

    measure_verification_gas: int = 5_000_000
    measure_call_gas: int = 20_000_000
    measure_paymaster_verification_gas: int = 2_000_000
    measure_paymaster_post_op_gas: int = 2_000_000
    buffer_percent: int = 10
    # EntryPoint work around the paymaster call that AA36 counts: deposit decrement, encoding,
    # call cost
    paymaster_overhead: int = 15_000
    confirm_attempts: int = 3


TracerSpec: TypeAlias = "Tracer | Callable[[], Tracer] | None"


@dataclass(frozen=True)
class SimConfig:
    chain_id: int
    # `from` of simulateValidation / simulateHandleOp calls (an eth_call, no fees)
    caller: str = ZERO_ADDRESS
    # gas of the simulateValidation call
    validation_call_gas: int = 30_000_000
    # blocks whose caches a worker keeps (the current one and the one before)
    cached_blocks: int = 2
    gas_policy: GasPolicy = field(default_factory=GasPolicy)
    node_timeout: float = 10.0


