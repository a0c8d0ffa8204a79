"""Who counts as staked (ERC-7562 SREP-010): stake and unstake delay at least the configured
minimums (`min_stake_value`, `min_unstake_delay`).

Two sources of stake information:
- admission reads it from the ValidationResult of simulateValidation (StakeInfo of sender,
  factory, paymaster, aggregator): no extra node call;
- `debug_bundler_getStakeStatus` reads the EntryPoint's `getDepositInfo(address)` through the
  node (the `staked` flag and `withdrawTime` are only visible there: an entity that called
  unlockStake keeps its stake in StakeInfo until it withdraws, but is not staked any more).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass

from eth_abi import decode, encode
from eth_hash.auto import keccak

from ..entrypoint import EntryPointVersion
from ..sim.results import StakeInfo

if TYPE_CHECKING:
    from ..chain.client import EthCaller
    from ..config import Config

SEL_GET_DEPOSIT_INFO = keccak(b"getDepositInfo(address)")[:4]
DEPOSIT_INFO_TYPE = "(uint256,bool,uint112,uint32,uint48)"


@dataclass(frozen=True, slots=True)
class StakePolicy:
    min_stake: int
    min_unstake_delay: int

    @classmethod
    def from_config(cls, config: Config) -> "StakePolicy":
        return cls(config.min_stake_value, config.min_unstake_delay)

    def is_staked(self, info: StakeInfo | None) -> bool:
        return info is not None and info.is_staked(self.min_stake, self.min_unstake_delay)

    def describe(self) -> str:
        return f"a stake of at least {self.min_stake} wei with an unstake delay of at least {self.min_unstake_delay} s"


@dataclass(frozen=True, slots=True)
class DepositInfo:
    deposit: int
    staked: bool
    stake: int
    unstake_delay_sec: int
    withdraw_time: int

    @property
    def stake_info(self) -> StakeInfo:
        return StakeInfo(stake=self.stake, unstake_delay_sec=self.unstake_delay_sec)


async def read_deposit_info(node: EthCaller, ep: EntryPointVersion, address: str, tag: str = "latest") -> DepositInfo:
    """EntryPoint.getDepositInfo(address) through the node (same layout in v0.7 and v0.8)."""
    out = await node.eth_call(ep.address, SEL_GET_DEPOSIT_INFO + encode(["address"], [address]), tag)
    ((deposit, staked, stake, delay, withdraw_time),) = decode([DEPOSIT_INFO_TYPE], out)
    return DepositInfo(deposit, staked, stake, delay, withdraw_time)


def is_staked(info: DepositInfo, policy: StakePolicy) -> bool:
    """Staked and locked, with at least the configured minimum stake and unstake delay."""
    return bool(info.staked) and policy.is_staked(info.stake_info)
