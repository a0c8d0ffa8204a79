"""Settings: flag > BUNDLER_* variable > TOML file > default for every field, strict parsing,
unknown TOML keys refused, executor keys from every source, the generated doc table up to date,
and `bundler run --help` listing everything."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from eth_account import Account

from bundler import config as cfg
from bundler import config_doc
from bundler.cli import build_parser

KEY_A = "0x" + "a1" * 32
KEY_B = "0x" + "b2" * 32
KEY_C = "0x" + "c3" * 32


def _parse(*argv):
    return build_parser().parse_args(["run", *argv])


def _sample_values(f) -> tuple:
    """Three distinct valid values of a field (for flag, env and file) as (flag, env, toml, expected...)."""
    kind = cfg._kind(f)
    choices = f.metadata.get("choices")
    if f.name in ("private_key",):
        return ([KEY_A], KEY_B, [KEY_C]), ([KEY_A], [KEY_B], [KEY_C])
    if f.name == "paymaster_contracts":
        a, b, c = (f"0.7=0x{d * 20}" for d in ("a1", "b2", "c3"))
        return ([a], b, [a, c]), ([a], [b], [a, c])
    if f.name == "paymaster_path":
        return ("/flag", "/env", "/file"), ("/flag", "/env", "/file")
    if kind == "list":
        c = list(choices or ("a.json", "b.json"))
        return ([c[0]], c[1], [c[0], c[1]]), ([c[0]], [c[1]], [c[0], c[1]])
    if choices:
        c = list(choices)
        return (c[0], c[1], c[-1]), (c[0], c[1], c[-1])
    if kind == "bool":
        return (True, "false", True), (True, False, True)
    if kind == "int":
        return ("7", "0x8", 9), (7, 8, 9)
    if kind == "float":
        return ("1.5", "2.5", 3.5), (1.5, 2.5, 3.5)
    return ("flag-value", "env-value", "file-value"), ("flag-value", "env-value", "file-value")


def _argv(f, value) -> list[str]:
    flag = "--" + f.name.replace("_", "-")
    if cfg._kind(f) == "bool":
        return [flag if value else "--no-" + flag[2:]]
    if isinstance(value, list):
        out = []
        for v in value:
            out += [flag, v]
        return out
    return [flag, str(value)]


def _toml(name: str, value) -> str:
    return f"{name} = {json.dumps(value)}\n" if not isinstance(value, bool) else f"{name} = {str(value).lower()}\n"


@pytest.mark.parametrize("f", fields(cfg.Config), ids=lambda f: f.name)
def test_precedence_flag_env_file_default(f, tmp_path):
    (flag_v, env_v, file_v), (flag_x, env_x, file_x) = _sample_values(f)
    toml = tmp_path / "bundler.toml"
    toml.write_text(_toml(f.name, file_v))
    env = {"BUNDLER_" + f.name.upper(): env_v}
    default = f.default if f.default is not MISSING else f.default_factory()

    assert getattr(cfg.load(_parse(), environ={}), f.name) == default
    assert getattr(cfg.load(_parse("--config", str(toml)), environ={}), f.name) == file_x
    assert getattr(cfg.load(_parse("--config", str(toml)), environ=env), f.name) == env_x
    assert getattr(cfg.load(_parse("--config", str(toml), *_argv(f, flag_v)), environ=env), f.name) == flag_x
    # BUNDLER_CONFIG names the file too
    assert getattr(cfg.load(_parse(), environ={"BUNDLER_CONFIG": str(toml)}), f.name) == file_x


def test_unknown_and_ill_typed_settings_are_refused(tmp_path):
    toml = tmp_path / "bundler.toml"
    toml.write_text('max_bundle_ops = 8\nmax_bundel_gas = 5\n')
    with pytest.raises(SystemExit, match="unknown settings in .*: max_bundel_gas"):
        cfg.load(_parse("--config", str(toml)), environ={})
    toml.write_text('max_bundle_ops = "lots"\n')
    with pytest.raises(SystemExit, match=r"max_bundle_ops in .*: invalid value 'lots' for a int setting"):
        cfg.load(_parse("--config", str(toml)), environ={})
    toml.write_text('entry_points = [["0.7"]]\n')
    with pytest.raises(SystemExit, match="entry_points in"):
        cfg.load(_parse("--config", str(toml)), environ={})
    toml.write_text('max_bundle_ops = [1]\n')
    with pytest.raises(SystemExit, match="a single value is needed"):
        cfg.load(_parse("--config", str(toml)), environ={})
    toml.write_text('not toml at all = = =\n')
    with pytest.raises(SystemExit, match="is not valid TOML"):
        cfg.load(_parse("--config", str(toml)), environ={})
    with pytest.raises(SystemExit, match="cannot read the config file"):
        cfg.load(_parse("--config", str(tmp_path / "missing.toml")), environ={})
    with pytest.raises(SystemExit, match="BUNDLER_DEBUG_API: invalid value 'maybe'"):
        cfg.load(_parse(), environ={"BUNDLER_DEBUG_API": "maybe"})
    with pytest.raises(SystemExit, match="--bundle-mode: unsupported value"):
        cfg.load(_parse(), environ={"BUNDLER_BUNDLE_MODE": "sometimes"})
    with pytest.raises(SystemExit, match="--entry-points: unsupported value"):
        cfg.load(_parse(), environ={"BUNDLER_ENTRY_POINTS": "0.6"})
    with pytest.raises(SystemExit, match="--max-mempool-ops: must be at least 1"):
        cfg.load(_parse("--max-mempool-ops", "0"), environ={})
    with pytest.raises(SystemExit, match="--rate-limit-per-s: must not be negative"):
        cfg.load(_parse(), environ={"BUNDLER_RATE_LIMIT_PER_S": "-1"})
    # a secret's bad value is not echoed
    toml.write_text('keystore_password = 12345678\n')
    with pytest.raises(SystemExit) as info:
        cfg.load(_parse("--config", str(toml)), environ={})
    assert "12345678" not in str(info.value) and "<redacted>" in str(info.value)


def test_big_wei_amounts_and_hex(tmp_path):
    toml = tmp_path / "bundler.toml"
    toml.write_text('min_executor_balance = "100000000000000000000"\nmax_bundle_gas = 0x1000000\n')
    c = cfg.load(_parse("--config", str(toml)), environ={})
    assert c.min_executor_balance == 10**20 and c.max_bundle_gas == 0x1000000
    c = cfg.load(_parse(), environ={"BUNDLER_MIN_EXECUTOR_BALANCE": "0xde0b6b3a7640000"})
    assert c.min_executor_balance == 10**18


def test_executor_keys_from_every_source(tmp_path):
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"# comment\n{KEY_B[2:]}\n\n{KEY_A}\n")
    keystore = tmp_path / "ks.json"
    keystore.write_text(json.dumps(Account.encrypt(KEY_C, "pw", kdf="pbkdf2", iterations=1000)))
    pwfile = tmp_path / "pw.txt"
    pwfile.write_text("pw\nignored second line\n")
    c = cfg.load(_parse("--private-key-file", str(keyfile), "--keystore-file", str(keystore),
                        "--keystore-password-file", str(pwfile)),
                 environ={"BUNDLER_PRIVATE_KEY": f"{KEY_A}, {KEY_B}"})
    assert c.executor_keys() == [KEY_A, KEY_B, KEY_C]  # env first, then file, then keystores; once each
    c = cfg.load(_parse("--keystore-file", str(keystore)), environ={"BUNDLER_KEYSTORE_PASSWORD": "pw"})
    assert c.executor_keys() == [KEY_C]
    c = cfg.load(_parse("--keystore-file", str(keystore)), environ={})
    with pytest.raises(SystemExit, match="needs a password"):
        c.executor_keys()
    assert c.redacted()["keystore_password"] == ""
    c = cfg.load(_parse(), environ={"BUNDLER_PRIVATE_KEY": KEY_A, "BUNDLER_KEYSTORE_PASSWORD": "pw"})
    assert c.redacted()["private_key"] == "<redacted>" and c.redacted()["keystore_password"] == "<redacted>"
    assert KEY_A[2:] not in repr(c) and "keystore_password=" not in repr(c)


def test_secret_variables_are_scrubbed_after_reading():
    env = {"BUNDLER_PRIVATE_KEY": KEY_A, "BUNDLER_KEYSTORE_PASSWORD": "pw", "BUNDLER_PORT": "1"}
    cfg.scrub_secret_env(env)
    assert env == {"BUNDLER_PORT": "1"}


def test_doc_table_lists_every_setting_and_is_up_to_date():
    doc = config_doc.DOC.read_text()
    assert config_doc.render_doc(doc) == doc, "docs/configuration.md is stale: run python -m bundler.config_doc"
    for f in fields(cfg.Config):
        assert f"| `{f.name}` | `--{f.name.replace('_', '-')}` | `BUNDLER_{f.name.upper()}` |" in doc
    assert config_doc.main(["--check"]) == 0


def test_run_help_lists_every_setting():
    out = subprocess.run([str(Path(sys.executable).with_name("bundler")), "run", "--help"],
                         capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0
    for f in fields(cfg.Config):
        assert "--" + f.name.replace("_", "-") in out.stdout, f.name
        assert "BUNDLER_" + f.name.upper() in out.stdout, f.name
    assert "--config FILE" in out.stdout and "BUNDLER_CONFIG" in out.stdout
