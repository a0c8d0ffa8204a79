"""Every setting in one dataclass. Each field is a CLI flag (--field-name), an environment
variable (BUNDLER_FIELD_NAME) and a TOML key (field_name); the flag wins over the variable,
which wins over the file, which wins over the default."""
from __future__ import annotations

import argparse
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .entrypoint import VERSIONS as EP_VERSIONS


def _setting(default: Any, help: str, secret: bool = False, choices: tuple | None = None, **kw):
    meta = {"help": help, "secret": secret, "choices": choices}
    # a secret never shows in repr(config), whoever logs or prints it
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


# what wallets and clients read through a bundler URL; nothing that signs, sends or reveals
# the node's accounts (eth_sendTransaction, eth_sign*, eth_accounts, personal_*, admin_*)
DEFAULT_FORWARD_METHODS = (
    "eth_blockNumber", "eth_call", "eth_estimateGas", "eth_getBalance", "eth_getCode", "eth_getStorageAt",
    "eth_getTransactionCount", "eth_getLogs", "eth_getBlockByNumber", "eth_getBlockByHash",
    "eth_getBlockTransactionCountByHash", "eth_getBlockTransactionCountByNumber", "eth_getBlockReceipts",
    "eth_getTransactionByHash", "eth_getTransactionReceipt", "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionByBlockNumberAndIndex", "eth_gasPrice", "eth_maxPriorityFeePerGas", "eth_feeHistory",
    "eth_blobBaseFee", "eth_getProof", "eth_syncing", "net_version",
)


@dataclass
class Config:
    rpc_url: str = _setting("http://127.0.0.1:8545", "URL of the Ethereum node (JSON-RPC over HTTP)")
    expected_chain_id: int = _setting(0, "refuse to start if the node's chain id differs (0: accept any)")
    host: str = _setting("127.0.0.1", "address the bundler's JSON-RPC server listens on")
    port: int = _setting(4337, "port the bundler's JSON-RPC server listens on")
    entry_points: list[str] = _setting(
        list(EP_VERSIONS), "EntryPoint versions to serve (canonical addresses)", choices=EP_VERSIONS
    )
    private_key: list[str] = _setting(
        [], "executor private key (BUNDLER_PRIVATE_KEY takes a comma-separated list). "
            "A flag is visible in `ps`: prefer the variable or --private-key-file",
        secret=True,
    )
    private_key_file: str = _setting("", "file with one executor private key per line (# starts a comment)")
    keystore_file: list[str] = _setting(
        [], "encrypted JSON keystore (geth / eth_account format) holding an executor key"
    )
    keystore_password_file: str = _setting("", "file whose first line is the password of the keystore file(s)")
    keystore_password: str = _setting(
        "", "password of the keystore file(s); prefer BUNDLER_KEYSTORE_PASSWORD or --keystore-password-file",
        secret=True,
    )
    beneficiary: str = _setting("", "address receiving bundle fees (default: the executor)")
    bundle_mode: str = _setting("auto", "auto: bundle on new blocks / interval; manual: only on debug_bundler_sendBundleNow",
                                choices=("auto", "manual"))
    bundle_interval_ms: int = _setting(0, "with auto mode, also try to bundle this often (0 = only on new blocks and new ops)")
    bundle_coalesce_ms: int = _setting(
        250, "with auto mode, a bundle waits up to this long after the first op it could carry arrived, so a "
            "burst of ops goes out as one bigger bundle instead of many small ones (0 = send at once; a bundle "
            "that is full already goes at once)")
    admission_head_max_age_ms: int = _setting(
        0, "eth_sendUserOperation validates against the head block the bundler saw if the node confirmed it "
           "at most this long ago (no header request per op); an op refused there is judged again on the "
           "node's latest block if that is newer, but one accepted there may rest on a state a block just "
           "mined has changed (the second validation at bundle time still catches it). 0 = ask the node for "
           "every op: a client sees its own just-mined transactions")
    max_bundle_gas: int = _setting(10_000_000, "gas limit of one bundle transaction")
    bundle_check: str = _setting(
        "node", "where the whole bundle is checked before it is sent: node (eth_call of handleOps; "
                "bundles with EIP-7702 authorizations still use py-evm) or evm (py-evm only)",
        choices=("node", "evm"))
    max_bundle_ops: int = _setting(64, "most UserOperations in one bundle")
    min_priority_fee: int = _setting(0, "least maxPriorityFeePerGas an op must pay (wei)")
    max_ops_per_sender: int = _setting(4, "pending ops per unstaked sender")
    max_verification_gas: int = _setting(10_000_000, "largest verificationGasLimit accepted")
    valid_until_margin: int = _setting(
        30, "an op must stay valid at least this many seconds after the latest time its bundle is expected "
            "to be included (the next block's timestamp plus one observed block time)")
    valid_after_max_wait: int = _setting(
        60, "an op whose validAfter (account's or paymaster's) is this many seconds or less after the "
            "earliest time it can be included is admitted and held until it is due; further in the future "
            "it is refused (-32503)")
    dev_mine_when_held: bool = _setting(
        False, "dev chains only (anvil): while ops wait for their validAfter and the chain mines only on "
               "transactions, mine an empty block every second (evm_mine) so they come due; refused by a "
               "node that is not anvil (default for `bundler dev` without --block-time)")
    sim_workers: int = _setting(2, "simulation worker processes (0: in-process thread)")
    unsafe: bool = _setting(False, "skip the ERC-7562 validation rules (opcode, storage, stake, code-hash checks); "
                                   "only for trusted private deployments")
    readset_reuse: bool = _setting(
        True, "at the second validation, reuse the admission's validation when every value it read from the node "
              "is unchanged at the bundle's block (one batched re-read instead of a new simulation)")
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
    forward_methods: list[str] = _setting(
        list(DEFAULT_FORWARD_METHODS),
        "node methods passed through for clients that use one URL (read-only by default); any other "
        "method the bundler does not serve answers -32601")
    forward_send_raw_transaction: bool = _setting(
        False, "also pass eth_sendRawTransaction through to the node (off: the bundler is not a transaction relay)")
    get_logs_max_blocks: int = _setting(1000, "largest block range (toBlock - fromBlock + 1) of a passed-through eth_getLogs")
    cors_origins: list[str] = _setting(
        [], "web origins (scheme://host[:port], or *) whose pages may call the bundler from a browser; "
            "debug_* methods are never served to them (default for `bundler dev`: *)")
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
    instance_lease_s: float = _setting(
        10.0, "with --store postgres: an instance that has not renewed its lease for this long (or whose "
              "database session is gone) is dead, and the others take over its claimed ops and follow its "
              "in-flight transactions; it renews every quarter of this")
    data_dir: str = _setting("", "directory of the durable store, one bundler process per directory "
                             "(empty: ./bundler-data for `bundler run`, a temporary dir for `bundler dev` "
                             "and for a Bundler built in code)")
    store_sync: str = _setting("full", "SQLite synchronous mode: full survives power loss, normal survives "
                               "a killed process", choices=("full", "normal"))
    op_retention_hours: float = _setting(168.0, "keep mined/dropped ops this long for the by-hash/receipt methods (0: forever)")
    reorg_depth: int = _setting(64, "blocks during which a mined bundle is watched for reorgs")
    min_executor_balance: int = _setting(
        10**16, "least balance (wei) of each executor: below it no bundle is sent from it (its ops stay "
                "pending) and /health answers 503 (0: no check)")
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
    max_mempool_ops: int = _setting(
        10_000, "most pending UserOperations; when full, a new op paying a higher gas price evicts the "
                "lowest-paying one, an op paying less is refused"
    )
    sim_timeout_s: float = _setting(
        10.0, "longest one validation may run before it is aborted with an error (estimation gets twice "
              "this, a bundle simulation this per op; 0: no limit)"
    )
    sim_memory_mb: int = _setting(
        2048, "address-space limit of each simulation worker process, in MiB (RLIMIT_AS; 0: no limit)"
    )
    rate_limit_per_s: float = _setting(
        50.0, "JSON-RPC requests per second allowed per client IP, token bucket (0: no limit); "
              "a batch counts one per request"
    )
    rate_limit_burst: int = _setting(100, "token bucket size per client IP: requests allowed at once after idling")
    rate_limit_exempt_loopback: bool = _setting(
        False, "do not rate-limit clients on 127.0.0.0/8 and ::1 (on by default only for `bundler dev`: "
               "behind a reverse proxy on the same host every client would be exempt)")
    rate_limit_forwarded_for: bool = _setting(
        False, "behind a reverse proxy: take the client IP from the last X-Forwarded-For entry"
    )
    relay: bool = _setting(
        False, "serve the session relay API under /relay/v1 (backends act for accounts through session keys "
               "this server holds; docs/relay.md); on by default in `bundler dev`")
    relay_master_key: list[str] = _setting(
        [], "Fernet master key(s) encrypting the relay's session keys at rest, newest first (the first "
            "encrypts, all decrypt: rotation); prefer BUNDLER_RELAY_MASTER_KEY or --relay-master-key-file",
        secret=True)
    relay_master_key_file: str = _setting(
        "", "file with the relay master key(s), one per line, newest first (# starts a comment)")
    relay_max_clock_skew_s: float = _setting(
        300.0, "a signed relay request whose timestamp is further than this from the server's clock is refused")
    relay_nonce_lanes: int = _setting(
        4, "nonce lanes (EntryPoint nonce keys 1..N) per account, so several relay calls are in flight at once")
    relay_webhook_max_tries: int = _setting(6, "attempts of one webhook delivery (exponential backoff between them)")
    relay_webhook_private_networks: bool = _setting(
        False, "allow webhook URLs on loopback, private and link-local addresses (a backend could otherwise "
               "make the relay call services inside the operator's network); on in `bundler dev`")
    balance_refresh_s: float = _setting(15.0, "seconds between refreshes of the executor balance metrics")
    # gas sponsorship: the ERC-7677 paymaster service (docs/paymaster.md)
    paymaster_signer_key: str = _setting(
        "", "private key of the paymaster signer (the key SponsorPaymaster trusts); prefer "
            "BUNDLER_PAYMASTER_SIGNER_KEY or --paymaster-signer-key-file over the flag",
        secret=True,
    )
    paymaster_signer_key_file: str = _setting("", "file holding the paymaster signer key (one line)")
    paymaster_contracts: list[str] = _setting(
        [], "SponsorPaymaster addresses as VERSION=ADDRESS (0.7=0x..., 0.8=0x..., 0.9=0x...; docs/paymaster.md); "
            "`bundler dev` deploys and fills them")
    paymaster_policies_file: str = _setting(
        "", "TOML file of sponsorship policies ([policies.<id>] tables: senders, factories, targets, "
            "session_keys, budgets per period, validity, max cost per op)")
    paymaster_default_policy: str = _setting(
        "", "policy applied when the ERC-7677 context names none (empty: a policyId is required; "
            "sponsor-everything: no rules, `bundler dev`'s default)")
    paymaster_validity_s: int = _setting(600, "how long a paymaster signature stays valid (seconds)")
    paymaster_verification_gas: int = _setting(60_000, "paymasterVerificationGasLimit of sponsored ops")
    paymaster_post_op_gas: int = _setting(0, "paymasterPostOpGasLimit of sponsored ops (SponsorPaymaster has no postOp)")
    paymaster_path: str = _setting("/paymaster", "HTTP path serving only the pm_* methods (empty: none; they are "
                                                 "also on the bundler's URL)")
    paymaster_min_deposit: int = _setting(
        10**17, "below this EntryPoint deposit (wei) of a paymaster /health reports degraded (0: no check)")
    paymaster_settle_interval_s: float = _setting(
        2.0, "seconds between passes settling sponsorships whose ops were mined, dropped or expired")
    log_level: str = _setting("info", "logging level", choices=("debug", "info", "warning", "error"))
    log_format: str = _setting("text", "log lines as plain text or as JSON objects (one per line)",
                               choices=("text", "json"))

    def redacted(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = ("<redacted>" if v else v) if f.metadata.get("secret") else v
        return out

    def paymaster_contract_map(self) -> dict[str, str]:
        """EntryPoint version -> SponsorPaymaster address (lower-case), from paymaster_contracts."""
        return {v: a.strip().lower() for v, _, a in (e.partition("=") for e in self.paymaster_contracts)}

    def executor_keys(self) -> list[str]:
        """Every executor key from flags/env, the key file and the keystores, checked and
        de-duplicated; raises SystemExit naming the source of a bad key, never the key."""
        from .builder.keys import load_executor_keys

        return load_executor_keys(self)


class ConfigError(SystemExit):
    """A setting that cannot be used; the message names it and where it came from."""


SECRET_ENV = tuple("BUNDLER_" + f.name.upper() for f in fields(Config) if f.metadata.get("secret"))


def scrub_secret_env(environ=None) -> None:
    """Remove secret settings from this process's environment once read, so child processes
    (simulation workers, anything spawned later) do not inherit them."""
    environ = os.environ if environ is None else environ
    for name in SECRET_ENV:
        environ.pop(name, None)


def _env_name(name: str) -> str:
    return "BUNDLER_" + name.upper()


def _kind(f) -> str:
    """'int', 'bool', 'list', ... of a Config field."""
    return f.type.split("[")[0] if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _convert(f, raw: Any, source: str) -> Any:
    kind = _kind(f)
    shown = "<redacted>" if f.metadata.get("secret") else repr(raw)
    try:
        if kind == "list":
            if isinstance(raw, list):
                if any(isinstance(x, (list, dict)) for x in raw):
                    raise ValueError("nested values")
                return [str(x) for x in raw]
            if isinstance(raw, (dict, bool, int, float)):
                raise ValueError("not a list")
            return [x.strip() for x in str(raw).split(",") if x.strip()]
        if isinstance(raw, (list, dict)):
            raise ValueError("a single value is needed")
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind == "int":
            if isinstance(raw, bool) or isinstance(raw, float):
                raise ValueError("expected an integer")
            if not isinstance(raw, str):
                return int(raw)
            text = raw.strip().replace("_", "")
            prefixed = text.lstrip("+-")[:2].lower() in ("0x", "0o", "0b")
            return int(text, 0) if prefixed else int(text, 10)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        return raw
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: invalid value {shown} for a {kind} setting ({e})") from None


def _default(f) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()


def add_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="TOML file with settings (keys = field names) [env BUNDLER_CONFIG]")
    for f in fields(Config):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        choices = f.metadata.get("choices")
        help_text = f"{f.metadata['help']} [env {_env_name(f.name)}; default {_default(f)!r}]"
        kind = _kind(f)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind == "list":
            parser.add_argument(flag, action="append", default=None, help=help_text + " (repeatable)",
                                metavar="VALUE")
        else:
            parser.add_argument(flag, default=None, help=help_text, choices=choices,
                                metavar=None if choices else kind.upper())


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None,
         defaults: dict[str, Any] | None = None, **overrides) -> Config:
    """flag > BUNDLER_* variable > TOML file > `defaults` (a command's own) > default, for every
    field; `overrides` win over all."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    path = getattr(args, "config", None) if args is not None else None
    path = path or environ.get("BUNDLER_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                file_values = tomllib.load(fh)
        except OSError as e:
            raise ConfigError(f"cannot read the config file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    known = {f.name for f in fields(Config)}
    unknown = set(file_values) - known
    if unknown:
        raise ConfigError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for f in fields(Config):
        raw: Any = None
        source = ""
        flag = "--" + f.name.replace("_", "-")
        if args is not None and getattr(args, f.name, None) is not None:
            raw, source = getattr(args, f.name), flag
        elif _env_name(f.name) in environ:
            raw, source = environ[_env_name(f.name)], _env_name(f.name)
        elif f.name in file_values:
            raw, source = file_values[f.name], f"{f.name} in {path}"
        if raw is not None:
            values[f.name] = _convert(f, raw, source)
        elif defaults and f.name in defaults:
            values[f.name] = defaults[f.name]
    values.update(overrides)
    cfg = Config(**values)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Choices and ranges, whatever the source of the value."""
    for f in fields(Config):
        value = getattr(cfg, f.name)
        flag = "--" + f.name.replace("_", "-")
        choices = f.metadata.get("choices")
        if choices:
            bad = [v for v in (value if isinstance(value, list) else [value]) if v not in choices]
            if bad:
                raise ConfigError(f"{flag}: unsupported value(s) {bad}; choose from {', '.join(choices)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{flag}: must not be negative (got {value})")
    if not 0 < cfg.port < 65536 and cfg.port != 0:
        raise ConfigError(f"--port: {cfg.port} is not a TCP port")
    for entry in cfg.paymaster_contracts:
        version, sep, address = entry.partition("=")
        if not sep or version not in EP_VERSIONS or not re.fullmatch(r"0x[0-9a-fA-F]{40}", address.strip()):
            raise ConfigError(f"--paymaster-contracts: {entry!r} is not VERSION=ADDRESS (0.7=0x..., 0.8=0x... or 0.9=0x...)")
    if cfg.paymaster_path and not cfg.paymaster_path.startswith("/"):
        raise ConfigError(f"--paymaster-path: {cfg.paymaster_path!r} must start with /")
    for name in ("max_batch", "max_body_bytes", "max_bundle_ops", "max_mempool_ops", "rate_limit_burst",
                 "get_logs_max_blocks", "relay_nonce_lanes", "relay_webhook_max_tries"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1")


def field_docs() -> list[dict[str, Any]]:
    """One row per setting, for docs/configuration.md and `bundler run --help`."""
    rows = []
    for f in fields(Config):
        rows.append({
            "name": f.name,
            "flag": "--" + f.name.replace("_", "-"),
            "env": _env_name(f.name),
            "type": _kind(f),
            "default": _default(f),
            "choices": f.metadata.get("choices"),
            "secret": bool(f.metadata.get("secret")),
            "help": f.metadata["help"],
        })
    return rows
