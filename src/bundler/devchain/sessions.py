"""Deploy the SessionAccount implementations and factories (one pair per EntryPoint version) on
a dev chain, through the CREATE2 deployer with sessions.registry.DEV_SALT, so their addresses
are the same on every dev chain and are what the bundler recognises by default."""
from __future__ import annotations

from dataclasses import dataclass, field

from eth_abi import encode

from .. import contracts_build
from ..entrypoint import ALL
from ..sessions.registry import DEV_SALT
from .deploy import deploy_create2


@dataclass
class SessionDeployment:
    implementations: dict[str, str] = field(default_factory=dict)  # EntryPoint version -> SessionAccount
    factories: dict[str, str] = field(default_factory=dict)  # EntryPoint version -> SessionAccountFactory
    token: str = ""  # TestERC20 (anyone may mint), when asked for

    @property
    def proxy_creation_code(self) -> bytes:
        return contracts_build.bytecode("SessionAccountProxy")


def deploy_sessions(url: str, with_token: bool = False) -> SessionDeployment:
    """Needs build/contracts (node contracts/compile.mjs, part of `make setup`); idempotent."""
    out = SessionDeployment()
    for ep in ALL:
        impl = deploy_create2(url, DEV_SALT, contracts_build.bytecode("SessionAccount")
                              + encode(["address"], [ep.address]))
        factory = deploy_create2(url, DEV_SALT, contracts_build.bytecode("SessionAccountFactory")
                                 + encode(["address"], [impl]))
        out.implementations[ep.version] = impl.lower()
        out.factories[ep.version] = factory.lower()
    if with_token:
        out.token = deploy_create2(url, DEV_SALT, contracts_build.bytecode("TestERC20")).lower()
    return out
