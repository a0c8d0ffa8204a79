"""The sponsoring paymasters' EntryPoint deposits: what pays for sponsored ops. Read with the
monitor's periodic check (metric bundler_paymaster_deposit_wei); below --paymaster-min-deposit
/health reports degraded, since ops sponsored from then on will be refused by the EntryPoint."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from ..entrypoint import EntryPointVersion

if TYPE_CHECKING:
    from ..chain.client import NodeClient
    from ..metrics import Metrics

log = logging.getLogger(__name__)

SEL_BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")


class DepositWatcher:
    def __init__(self, *, node: NodeClient, paymasters: dict[EntryPointVersion, str], metrics: Metrics, min_deposit: int):
        self.node = node
        self.paymasters = paymasters
        self.metrics = metrics
        self.min_deposit = min_deposit

    async def check(self) -> tuple[list[dict[str, Any]], list[str]]:
        """([{entryPoint, paymaster, deposit, belowMinimum}], warnings)."""
        calls = [("eth_call", [{"to": ep.address, "data": "0x" + (SEL_BALANCE_OF + encode(["address"], [pm])).hex()},
                               "latest"]) for ep, pm in self.paymasters.items()]
        report: list[dict[str, Any]] = []
        warnings: list[str] = []
        try:
            results = await self.node.batch(calls)
        except Exception as e:  # the node check reports the node itself
            log.warning("paymaster deposit check failed: %s", e)
            return [{"entryPoint": ep.address, "paymaster": pm, "deposit": None} for ep, pm in self.paymasters.items()], [
                "paymaster deposits could not be read"]
        for (ep, pm), raw in zip(self.paymasters.items(), results):
            deposit = int(raw, 16) if raw not in (None, "0x") else 0
            self.metrics.paymaster_deposit.labels(ep.version, pm).set(deposit)
            low = bool(self.min_deposit) and deposit < self.min_deposit
            report.append({"entryPoint": ep.address, "paymaster": pm, "deposit": str(deposit), "belowMinimum": low})
            if low:
                warnings.append(f"paymaster {pm} (EntryPoint v{ep.version}) has a deposit of {deposit} wei, below "
                                f"{self.min_deposit} (--paymaster-min-deposit): sponsored ops will fail once it is spent")
        return report, warnings
