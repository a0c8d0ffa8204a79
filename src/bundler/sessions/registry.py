"""Which contracts are SessionAccount implementations and factories, and for which EntryPoint.

Configured addresses (config.session_implementations / session_factories) or, by default, the
deterministic dev-chain addresses: CREATE2 through the deployer 0x4e59…956C with DEV_SALT of the
compiled SessionAccount(entryPoint) and SessionAccountFactory(implementation) (build/contracts,
written by `make setup`). `bundler dev` deploys exactly those (devchain.deploy_sessions).

At start-up every candidate is checked on the node: an implementation must have code and
answer entryPoint() with a served EntryPoint; a factory must answer ACCOUNT_IMPLEMENTATION()
with a known implementation. Candidates without code are left out (e.g. the dev addresses
on a chain where nobody deployed them).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from eth_abi import encode

from session_sdk.addresses import CREATE2_DEPLOYER, create2_address

from .. import entrypoint as eps
from ..entrypoint import EntryPointVersion
from ..chain.client import NodeClient, RpcCallError
from .state import SEL_ACCOUNT_IMPLEMENTATION, SEL_ENTRY_POINT

log = logging.getLogger(__name__)

DEV_SALT = b"\x00" * 31 + b"\x5e"


def dev_addresses() -> tuple[dict[str, str], dict[str, str]]:
    """({EntryPoint version: implementation}, {EntryPoint version: factory}) of the dev chain;
    empty when the contracts are not compiled."""
    from .. import contracts_build

    try:
        account_code = contracts_build.bytecode("SessionAccount")
        factory_code = contracts_build.bytecode("SessionAccountFactory")
    except FileNotFoundError:
        return {}, {}
    impls, factories = {}, {}
    for ep in eps.ALL:
        impl = create2_address(CREATE2_DEPLOYER, DEV_SALT, account_code + encode(["address"], [ep.address]))
        impls[ep.version] = impl
        factories[ep.version] = create2_address(CREATE2_DEPLOYER, DEV_SALT,
                                                factory_code + encode(["address"], [impl]))
    return impls, factories


@dataclass
class SessionContracts:
    implementations: dict[str, EntryPointVersion] = field(default_factory=dict)  # address -> EntryPoint
    factories: dict[str, str] = field(default_factory=dict)  # factory -> implementation

    def __bool__(self) -> bool:
        return bool(self.implementations)

    def entry_point_of(self, implementation: str | None) -> EntryPointVersion | None:
        return self.implementations.get(implementation) if implementation else None

    def describe(self) -> list[str]:
        lines = []
        for impl, ep in self.implementations.items():
            facs = [f for f, i in self.factories.items() if i == impl]
            lines.append(f"SessionAccount v{ep.version} {impl}" + (f" (factory {', '.join(facs)})" if facs else ""))
        return lines

    @classmethod
    async def discover(cls, rpc: NodeClient, entry_points: list[EntryPointVersion],
                       implementations: list[str] | None = None, factories: list[str] | None = None
                       ) -> "SessionContracts":
        impl_candidates = [a.lower() for a in implementations or []]
        factory_candidates = [a.lower() for a in factories or []]
        if not impl_candidates:
            dev_impls, dev_factories = dev_addresses()
            impl_candidates = list(dev_impls.values())
            if not factory_candidates:
                factory_candidates = list(dev_factories.values())
        out = cls()
        served = {ep.address: ep for ep in entry_points}
        if impl_candidates:
            answers = await rpc.many([("eth_call", [{"to": a, "data": "0x" + SEL_ENTRY_POINT.hex()}, "latest"])
                                      for a in impl_candidates])
            for address, answer in zip(impl_candidates, answers):
                if isinstance(answer, RpcCallError) or not isinstance(answer, str) or len(answer) < 66:
                    log.info("no SessionAccount implementation at %s; session recognition skips it", address)
                    continue
                ep = served.get("0x" + answer[-40:])
                if ep is None:
                    log.warning("SessionAccount %s serves EntryPoint 0x%s, which this bundler does not serve",
                                address, answer[-40:])
                    continue
                out.implementations[address] = ep
        if factory_candidates:
            answers = await rpc.many([("eth_call", [{"to": a, "data": "0x" + SEL_ACCOUNT_IMPLEMENTATION.hex()},
                                                    "latest"]) for a in factory_candidates])
            for address, answer in zip(factory_candidates, answers):
                if isinstance(answer, RpcCallError) or not isinstance(answer, str) or len(answer) < 66:
                    continue
                impl = "0x" + answer[-40:]
                if impl in out.implementations:
                    out.factories[address] = impl
                else:
                    log.warning("SessionAccountFactory %s makes clones of %s, not a known implementation",
                                address, impl)
        return out
