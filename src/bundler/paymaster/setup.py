"""Builds the paymaster services from the Config and the few services they use (called by
bundler.app; never handed the Bundler)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import logging

from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector

from ..config import Config
from ..entrypoint import EntryPointVersion
from .deposit import DepositWatcher
from .policy import SPONSOR_EVERYTHING, PolicyError, load_policies
from .service import PaymasterSettings, Settler, SponsorService
from .signer import PaymasterSigner

if TYPE_CHECKING:
    from ..chain.client import NodeClient
    from ..chain.head import HeadTracker
    from ..metrics import Metrics
    from ..store import Store

log = logging.getLogger(__name__)

SEL_SIGNER = function_signature_to_4byte_selector("signer()")
SEL_ENTRY_POINT = function_signature_to_4byte_selector("entryPoint()")


def settings_from_config(config: Config) -> PaymasterSettings:
    try:
        policies = load_policies(config.paymaster_policies_file) if config.paymaster_policies_file else {}
    except PolicyError as e:
        raise SystemExit(str(e)) from None
    default = config.paymaster_default_policy
    if default and default != SPONSOR_EVERYTHING and default not in policies:
        raise SystemExit(f"--paymaster-default-policy: no policy {default!r} in the policies file")
    return PaymasterSettings(
        contracts=config.paymaster_contract_map(), policies=policies, default_policy=default,
        validity_s=config.paymaster_validity_s, verification_gas=config.paymaster_verification_gas,
        post_op_gas=config.paymaster_post_op_gas,
    )


async def check_contracts(node: NodeClient, signer: PaymasterSigner, contracts: dict[EntryPointVersion, str]) -> None:
    """Each configured SponsorPaymaster must exist, serve its EntryPoint and trust our signer:
    otherwise every sponsored op would fail on chain."""
    for ep, address in contracts.items():
        try:
            trusted = decode(["address"], await node.eth_call(address, SEL_SIGNER))[0].lower()
            entry_point = decode(["address"], await node.eth_call(address, SEL_ENTRY_POINT))[0].lower()
        except Exception:
            raise SystemExit(f"--paymaster-contracts: {address} (v{ep.version}) is not a SponsorPaymaster") from None
        if entry_point != ep.address:
            raise SystemExit(f"--paymaster-contracts: {address} serves EntryPoint {entry_point}, not v{ep.version}")
        if trusted != signer.address:
            raise SystemExit(f"--paymaster-contracts: {address} trusts signer {trusted}, but the configured "
                             f"paymaster signer is {signer.address}")


async def build(signer: PaymasterSigner, *, config: Config, node: NodeClient, store: Store, head: HeadTracker,
                chain_id: int, entry_points: list[EntryPointVersion],
                metrics: Metrics) -> tuple[SponsorService, Settler, DepositWatcher]:
    """(SponsorService, Settler, DepositWatcher) once the store is open and the head known."""
    settings = settings_from_config(config)
    by_version = {ep.version: ep for ep in entry_points}
    contracts = {by_version[v]: a for v, a in settings.contracts.items() if v in by_version}
    if not contracts:
        raise SystemExit("a paymaster signer key is configured but no --paymaster-contracts for the served "
                         "EntryPoints")
    await check_contracts(node, signer, contracts)
    service = SponsorService(settings=settings, signer=signer, store=store, head=head,
                             chain_id=chain_id, entry_points=entry_points, metrics=metrics)
    settler = Settler(store=store, node=node, head=head, metrics=metrics,
                      interval_s=config.paymaster_settle_interval_s, lookback_blocks=config.receipt_lookback_blocks)
    deposits = DepositWatcher(node=node, paymasters=contracts, metrics=metrics,
                              min_deposit=config.paymaster_min_deposit)
    log.info("paymaster: signer %s, %s; policies: %s (default %s)", signer.address,
             ", ".join(f"v{ep.version} {a}" for ep, a in contracts.items()),
             ", ".join(sorted(settings.policies)) or "none", settings.default_policy or "none")
    return service, settler, deposits
