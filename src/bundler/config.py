"""Every setting in one dataclass. Each field is a CLI flag (--field-name), an environment
variable (BUNDLER_FIELD_NAME) and a TOML key (field_name); the flag wins over the variable,
which wins over the file, which wins over the default."""
from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


def _setting(default: Any, help: str, secret: bool = False, choices: tuple | None = None, **kw):
    meta = {"help": help, "secret": secret, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    rpc_url: str = _setting("http://127.0.0.1:8545", "URL of the Ethereum node (JSON-RPC over HTTP)")
    expected_chain_id: int = _setting(0, "refuse to start if the node's chain id differs (0: accept any)")
    host: str = _setting("127.0.0.1", "address the bundler's JSON-RPC server listens on")
    port: int = _setting(4337, "port the bundler's JSON-RPC server listens on")
    entry_points: list[str] = _setting(
        ["0.7", "0.8"], "EntryPoint versions to serve (canonical addresses)", choices=("0.7", "0.8")
    )
    private_key: list[str] = _setting(
        [], "executor private key (repeat for several); prefer BUNDLER_PRIVATE_KEY or --private-key-file",
        secret=True,
    )
    private_key_file: str = _setting("", "file with one executor private key per line", secret=False)
    beneficiary: str = _setting("", "address receiving bundle fees (default: the executor)")
    bundle_mode: str = _setting("auto", "auto: bundle on new blocks / interval; manual: only on debug_bundler_sendBundleNow",
                                choices=("auto", "manual"))
    bundle_interval_ms: int = _setting(0, "with auto mode, also try to bundle this often (0 = only on new blocks and new ops)")
    max_bundle_gas: int = _setting(10_000_000, "gas limit of one bundle transaction")
    max_bundle_ops: int = _setting(64, "most UserOperations in one bundle")
    min_priority_fee: int = _setting(0, "least maxPriorityFeePerGas an op must pay (wei)")
    max_ops_per_sender: int = _setting(4, "pending ops per unstaked sender")
    max_verification_gas: int = _setting(10_000_000, "largest verificationGasLimit accepted")
    valid_until_margin: int = _setting(30, "an op must stay valid at least this many seconds after admission")
    sim_workers: int = _setting(2, "simulation worker processes (0: in-process thread)")
    unsafe: bool = _setting(False, "skip the ERC-7562 validation rules (opcode, storage, stake, code-hash checks); "
                                   "only for trusted private deployments")
    min_stake_value: int = _setting(10**18, "least EntryPoint stake (wei) for an entity to count as staked (ERC-7562 MIN_STAKE_VALUE)")
    min_unstake_delay: int = _setting(86_400, "least unstake delay (seconds) for an entity to count as staked (ERC-7562 MIN_UNSTAKE_DELAY)")
    # staking and ERC-7562 reputation (docs/reputation.md)
    reputation_min_inclusion_denominator: int = _setting(
        10, "MIN_INCLUSION_RATE_DENOMINATOR: 10 for a bundler, 100 for a node that does not bundle")
    reputation_throttling_slack: int = _setting(10, "THROTTLING_SLACK")
    reputation_ban_slack: int = _setting(50, "BAN_SLACK")
    reputation_ban_ops_seen_penalty: int = _setting(10_000, "BAN_OPS_SEEN_PENALTY: opsSeen of an entity blamed for a bundle-time failure")
    reputation_decay_interval_s: float = _setting(3600.0, "opsSeen/opsIncluded are multiplied by 23/24 this often")
    throttled_entity_mempool_count: int = _setting(4, "THROTTLED_ENTITY_MEMPOOL_COUNT")
    throttled_entity_bundle_count: int = _setting(4, "THROTTLED_ENTITY_BUNDLE_COUNT")
    throttled_entity_live_blocks: int = _setting(10, "THROTTLED_ENTITY_LIVE_BLOCKS")
    same_unstaked_entity_mempool_count: int = _setting(10, "SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT (unstaked paymasters)")
    max_ops_allowed_unstaked_entity: int = _setting(10_000, "MAX_OPS_ALLOWED_UNSTAKED_ENTITY")
    debug_api: bool = _setting(False, "serve the debug_bundler_* methods (tests and operators only)")
    max_body_bytes: int = _setting(1 << 20, "largest HTTP request body accepted")
    max_batch: int = _setting(100, "most requests in one JSON-RPC batch")
    receipt_lookback_blocks: int = _setting(100_000, "how far back eth_getUserOperation* search the logs")
    tx_replace_after_s: float = _setting(15.0, "replace a bundle transaction not mined after this many seconds")
    fee_bump_percent: int = _setting(15, "fee increase of a replacement bundle transaction")
    max_fee_multiplier: int = _setting(4, "cap of replacement fees, as a multiple of the first attempt")
    head_poll_interval: float = _setting(0.25, "seconds between polls of the node's block number")
    store: str = _setting("sqlite", "where acknowledged ops, in-flight bundles and reputation are kept "
                          "(memory: lost on restart; postgres: shared by several instances)",
                          choices=("sqlite", "memory", "postgres"))
    postgres_dsn: str = _setting("", "PostgreSQL connection string for --store postgres", secret=True)
    data_dir: str = _setting("", "directory of the durable store, one bundler process per directory "
                             "(empty: ./bundler-data for `bundler run`, a temporary dir for `bundler dev` "
                             "and for a Bundler built in code)")
    store_sync: str = _setting("full", "SQLite synchronous mode: full survives power loss, normal survives "
                               "a killed process", choices=("full", "normal"))
    op_retention_hours: float = _setting(168.0, "keep mined/dropped ops this long for the by-hash/receipt methods (0: forever)")
    reorg_depth: int = _setting(64, "blocks during which a mined bundle is watched for reorgs")
    min_executor_balance: int = _setting(10**16, "refuse to send bundles from an executor with less than this (wei); ops stay pending")
    max_bundle_reverts: int = _setting(3, "drop an op after this many on-chain reverts of bundles carrying it")
    session_implementations: list[str] = _setting(
        [], "SessionAccount implementations whose accounts get session-aware validation "
            "(default: the deterministic dev-chain addresses, used where they have code)")
    session_factories: list[str] = _setting(
        [], "SessionAccountFactory addresses (default: the dev-chain factories of the default implementations)")
    session_fast_path: bool = _setting(
        True, "admit deployed session accounts' policy-checked session ops without a py-evm run "
              "(bundles are still simulated before sending)")
    session_max_ops_per_sender: int = _setting(
        16, "pending ops per SessionAccount when the bundler verified the op's session policy itself")
    log_level: str = _setting("info", "logging level", choices=("debug", "info", "warning", "error"))

    def redacted(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = ("<redacted>" if v else v) if f.metadata.get("secret") else v
        return out

    def executor_keys(self) -> list[str]:
        keys = list(self.private_key)
        if self.private_key_file:
            with open(self.private_key_file) as fh:
                keys += [line.strip() for line in fh if line.strip() and not line.startswith("#")]
        return keys


def _env_name(name: str) -> str:
    return "BUNDLER_" + name.upper()


def _kind(f) -> str:
    """'int', 'bool', 'list', ... of a Config field."""
    return f.type.split("[")[0] if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def _convert(f, raw: Any) -> Any:
    kind = _kind(f)
    if kind == "list":
        if isinstance(raw, list):
            return [str(x) for x in raw]
        return [x.strip() for x in str(raw).split(",") if x.strip()]
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        return str(raw).lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(raw, 0) if isinstance(raw, str) else int(raw)
    if kind == "float":
        return float(raw)
    return str(raw)


def add_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML file with settings (keys = field names)")
    for f in fields(Config):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default_shown = f.default if f.default is not MISSING else f.default_factory()
        help_text = f"{f.metadata['help']} [env {_env_name(f.name)}; default {default_shown!r}]"
        kind = _kind(f)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind == "list":
            parser.add_argument(flag, action="append", default=None, help=help_text + " (repeatable)")
        else:
            parser.add_argument(flag, default=None, help=help_text, choices=f.metadata.get("choices"))


def load(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None, **overrides) -> Config:
    environ = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    path = getattr(args, "config", None) if args is not None else None
    path = path or environ.get("BUNDLER_CONFIG")
    if path:
        with open(path, "rb") as fh:
            file_values = tomllib.load(fh)
    known = {f.name for f in fields(Config)}
    unknown = set(file_values) - known
    if unknown:
        raise SystemExit(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for f in fields(Config):
        raw = None
        if args is not None and getattr(args, f.name, None) is not None:
            raw = getattr(args, f.name)
        elif _env_name(f.name) in environ:
            raw = environ[_env_name(f.name)]
        elif f.name in file_values:
            raw = file_values[f.name]
        if raw is not None:
            values[f.name] = _convert(f, raw)
    values.update(overrides)
    cfg = Config(**values)
    choices = {f.name: f.metadata.get("choices") for f in fields(Config)}
    for name in ("entry_points",):
        bad = [v for v in getattr(cfg, name) if v not in choices[name]]
        if bad:
            raise SystemExit(f"--{name.replace('_', '-')}: unsupported value(s) {bad}")
    return cfg
