"""`bundler run` against any node; `bundler dev` on an embedded anvil chain."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile

from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from . import CLIENT_VERSION, config as cfg
from .errors import BundlerError
from .logs import setup_logging

# Deterministic so a restarted dev chain and bundler agree; never use on a real network.
DEV_EXECUTOR_KEY = "0x" + keccak(b"bundler dev executor key").hex()
DEV_PAYMASTER_SIGNER_KEY = "0x" + keccak(b"bundler dev paymaster signer key").hex()
DEV_PAYMASTER_DEPOSIT = 1_000 * 10**18


def _setup_logging(config: cfg.Config, args: argparse.Namespace) -> None:
    setup_logging(config.log_level, config.log_format)
    if getattr(args, "private_key", None) or getattr(args, "keystore_password", None):
        logging.getLogger("bundler").warning(
            "a secret was given on the command line, where `ps` shows it to every user of this "
            "machine; use BUNDLER_PRIVATE_KEY / --private-key-file / a keystore instead"
        )


def _load(args: argparse.Namespace, defaults: dict | None = None, **overrides) -> cfg.Config:
    config = cfg.load(args, defaults=defaults, **overrides)
    # read once; child processes (simulation workers) must not inherit them
    cfg.scrub_secret_env()
    return config


def _run_until_signal(coro_factory) -> int:
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass

    async def main() -> None:
        task = asyncio.current_task()
        if task is None:  # asyncio.run() runs main() as a task
            raise RuntimeError("main() runs outside a task: nothing for a signal to cancel")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await coro_factory()

    try:
        asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        pass
    except BundlerError as e:  # e.g. the node cannot be reached at start: say so, no traceback
        logging.getLogger("bundler").error("cannot start: %s", e.message)
        return 1
    return 0


DEFAULT_DATA_DIR = "./bundler-data"


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    if not config.data_dir:
        config.data_dir = DEFAULT_DATA_DIR
    _setup_logging(config, args)
    from .app import serve

    return _run_until_signal(lambda: serve(config))


def cmd_dev(args: argparse.Namespace) -> int:
    from .devchain import ANVIL_ACCOUNT0, ANVIL_ACCOUNT0_KEY, deploy_all, deploy_sessions, fund, start_anvil

    overrides = {"debug_api": True if args.debug_api is None else args.debug_api}
    # a dev chain serves local tools and the app under development: loopback clients are not
    # rate-limited and any web page may call the public methods (debug_* never cross-origin);
    # the session relay is served
    dev_defaults = {"rate_limit_exempt_loopback": True, "cors_origins": ["*"], "relay": True,
                    "relay_webhook_private_networks": True}
    if not args.block_time:  # automine: ops held for their validAfter need blocks to come due
        dev_defaults["dev_mine_when_held"] = True
    if not (args.private_key or args.private_key_file or args.keystore_file
            or os.environ.get("BUNDLER_PRIVATE_KEY") or os.environ.get("BUNDLER_PRIVATE_KEY_FILE")
            or os.environ.get("BUNDLER_KEYSTORE_FILE")):
        overrides["private_key"] = [DEV_EXECUTOR_KEY]
    temp_data_dir = None
    node = start_anvil(port=args.node_port, chain_id=args.chain_id, block_time=args.block_time,
                       die_with_parent=True)
    try:
        deployment = deploy_all(node.url)
        sessions = deploy_sessions(node.url, with_token=True)
        overrides["rpc_url"] = node.url
        config = _load(args, dev_defaults, **overrides)
        if not config.data_dir:
            # the dev chain starts empty every time, so by default its bundler state does too:
            # a temporary data dir removed at exit (give --data-dir to keep it)
            temp_data_dir = config.data_dir = tempfile.mkdtemp(prefix="bundler-dev-")
        _setup_logging(config, args)
        for key in config.executor_keys():
            fund(node.url, Account.from_key(key).address, 10_000 * 10**18)
        paymasters = _dev_paymaster(config, node.url)

        def ready(bundler) -> None:
            lines = [
                f"{CLIENT_VERSION} on the embedded dev chain",
                f"  bundler URL     {bundler.url}",
                f"  node URL        {node.url}  (anvil, chain id {bundler.chain_id})",
            ]
            for version, address in deployment.entry_points.items():
                lines.append(f"  EntryPoint v{version}  {address}")
                lines.append(f"    SimpleAccountFactory  {deployment.factories[version]}")
                lines.append(f"    SessionAccount        {to_checksum_address(sessions.implementations[version])}")
                lines.append(f"    SessionAccountFactory {to_checksum_address(sessions.factories[version])}")
            lines.append(f"  TestERC20       {to_checksum_address(sessions.token)}  (anyone may mint)")
            if bundler.paymaster is not None:
                for version, address in paymasters.items():
                    lines.append(f"  SponsorPaymaster v{version}  {to_checksum_address(address)}")
                policy = config.paymaster_default_policy or "none: clients must name a policyId"
                lines.append(f"    pm_* on the bundler URL and {bundler.url}{config.paymaster_path}; "
                             f"default policy {policy}")
            if bundler.sessions is not None and not bundler.sessions.contracts:
                lines.append("  (session accounts are NOT recognised: check --session-implementations)")
            lines += [
                f"  executor        {', '.join(e.address for e in bundler.executors)}",
                f"  store           {config.store}" + (f" in {config.data_dir}" if config.store != "memory" else "")
                + (" (temporary)" if temp_data_dir and config.store != "memory" else ""),
                f"  funded test key {ANVIL_ACCOUNT0_KEY}  ({ANVIL_ACCOUNT0})",
                "  debug_bundler_* methods enabled" if config.debug_api else "",
                f"  session relay   {bundler.url}/relay/v1  (OpenAPI: /relay/v1/openapi.json)"
                if bundler.relay is not None else "",
                "Ctrl-C stops the bundler and the chain.",
            ]
            print("\n".join(line for line in lines if line), flush=True)

        from .app import serve

        return _run_until_signal(lambda: serve(config, ready, dev=True))
    finally:
        node.stop()
        if temp_data_dir:
            shutil.rmtree(temp_data_dir, ignore_errors=True)


def _dev_paymaster(config: cfg.Config, url: str) -> dict[str, str]:
    """Deploy SponsorPaymaster for each EntryPoint (CREATE2: fixed addresses for the dev signer),
    fund its deposit and point the config at it; with no policies configured, sponsor everything."""
    from .devchain.paymaster import deploy_paymaster, fund_paymaster
    from .entrypoint import ALL
    from .paymaster.signer import load_signer

    if not (config.paymaster_signer_key or config.paymaster_signer_key_file):
        config.paymaster_signer_key = DEV_PAYMASTER_SIGNER_KEY
    if not config.paymaster_contracts:
        signer = load_signer(config)
        if signer is None:  # a key (the dev one unless given) was set just above
            raise cfg.ConfigError("the dev paymaster needs a signer key: --paymaster-signer-key")
        deployed = {}
        for ep in ALL:
            if ep.version in config.entry_points:
                deployed[ep.version] = deploy_paymaster(url, ep, signer.address)
                fund_paymaster(url, deployed[ep.version], DEV_PAYMASTER_DEPOSIT)
        config.paymaster_contracts = [f"{v}={a}" for v, a in deployed.items()]
    if not config.paymaster_default_policy and not config.paymaster_policies_file:
        config.paymaster_default_policy = "sponsor-everything"
    return config.paymaster_contract_map()


def cmd_relay_rotate_key(args: argparse.Namespace) -> int:
    """Re-encrypt the relay's stored keys under the newest master key (the first one configured),
    so the older master keys can be removed from the configuration afterwards."""
    config = _load(args)
    if not config.data_dir:
        config.data_dir = DEFAULT_DATA_DIR
    _setup_logging(config, args)
    from .relay import rotate_master_key
    from .relay.keystore import KeyDecryptError, KeyStore, load_master_keys
    from .store.relay import RelayStore

    keys = KeyStore(load_master_keys(config))
    holder = None
    if config.store == "postgres":
        store = RelayStore.postgres(config.postgres_dsn)
    elif config.store == "sqlite":
        from .store.sqlite import SqliteStore, StoreError

        try:  # holds the data dir lock: refuses while a bundler is running on it
            holder = SqliteStore(config.data_dir)
        except StoreError as e:
            raise SystemExit(f"store: {e}") from None
        store = RelayStore.sqlite(str(holder.path))
    else:
        raise SystemExit("--store memory keeps no relay keys to rotate")
    try:
        n = rotate_master_key(store, keys)
    except KeyDecryptError as e:
        raise SystemExit(f"rotation stopped: {e}") from None
    finally:
        store.close()
        if holder is not None:
            holder.close()
    print(f"re-encrypted {n} key(s) under the first master key; the others may now be removed", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bundler", description="ERC-4337 bundler with session-aware validation")
    parser.add_argument("--version", action="version", version=CLIENT_VERSION)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="run against a node whose EntryPoints are deployed",
        description="Run the bundler against a node whose EntryPoints are deployed. Every setting is a "
                    "flag, a BUNDLER_* environment variable or a key of the TOML file given by --config; "
                    "a flag wins over the variable, which wins over the file (docs/configuration.md).",
    )
    cfg.add_arguments(run)
    run.set_defaults(func=cmd_run)
    dev = sub.add_parser("dev", help="start anvil with the EntryPoints deployed, and the bundler on it")
    cfg.add_arguments(dev, skip=("rpc_url",))
    dev.add_argument("--node-port", type=int, default=8545, help="anvil's port (default 8545)")
    dev.add_argument("--chain-id", type=int, default=1337, help="anvil's chain id (default 1337)")
    dev.add_argument("--block-time", type=float, default=None, help="mine a block every N seconds (default: on each transaction)")
    dev.set_defaults(func=cmd_dev)
    rotate = sub.add_parser(
        "relay-rotate-key", help="re-encrypt the relay's session keys under the newest master key",
        description="Give the new master key first and the old ones after it (BUNDLER_RELAY_MASTER_KEY=new,old "
                    "or --relay-master-key-file), run this with the bundler stopped (SQLite) or running "
                    "(PostgreSQL, every instance configured with both keys), then drop the old keys (docs/relay.md).")
    cfg.add_arguments(rotate)
    rotate.set_defaults(func=cmd_relay_rotate_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
