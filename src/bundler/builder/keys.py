"""Executor keys from every source an operator may use: --private-key (repeatable),
BUNDLER_PRIVATE_KEY (comma-separated), --private-key-file (one key per line) and encrypted
JSON keystores (--keystore-file with --keystore-password-file or BUNDLER_KEYSTORE_PASSWORD).

Errors name the source and position of a bad key, never its text: a key must not reach a log,
an error message or a traceback.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
import logging

from eth_account import Account

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)


class ExecutorKeyError(SystemExit):
    """A key that cannot be used (the message never contains key material)."""


def _check(key: str, where: str) -> str:
    text = key.strip()
    if not text.startswith(("0x", "0X")):
        text = "0x" + text
    try:
        Account.from_key(text)
    except Exception:  # the exception text may quote the key: do not chain it
        raise ExecutorKeyError(f"{where} is not a valid secp256k1 private key (expected 32 bytes of hex)") from None
    return text


def _read_text(path: str, what: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as e:
        raise ExecutorKeyError(f"cannot read the {what} {path}: {e.strerror}") from None


def _keystore_password(config) -> str:
    if config.keystore_password_file:
        text = _read_text(config.keystore_password_file, "keystore password file")
        return text.splitlines()[0] if text else ""
    if config.keystore_password:
        return config.keystore_password
    raise ExecutorKeyError("--keystore-file needs a password: --keystore-password-file or BUNDLER_KEYSTORE_PASSWORD")


# for the other keys handled the same way (the paymaster signer)
check_key = _check
read_secret_file = _read_text


def load_executor_keys(config: Config) -> list[str]:
    """All executor keys of `config` (0x-prefixed hex), each address once, in the order given."""
    found: list[tuple[str, str]] = []
    for i, key in enumerate(config.private_key, 1):
        found.append((key, f"executor key #{i} of --private-key / BUNDLER_PRIVATE_KEY"))
    if config.private_key_file:
        text = _read_text(config.private_key_file, "private key file")
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                found.append((line, f"line {lineno} of {config.private_key_file}"))
    if config.keystore_file:
        password = _keystore_password(config)
        for path in config.keystore_file:
            try:
                keystore = json.loads(_read_text(path, "keystore file"))
            except ValueError:
                raise ExecutorKeyError(f"keystore file {path} is not JSON") from None
            try:
                secret = Account.decrypt(keystore, password)
            except Exception as e:
                # eth_account says "MAC mismatch" for a wrong password; its messages hold no key
                reason = str(e) if isinstance(e, ValueError) and "MAC" in str(e) else type(e).__name__
                raise ExecutorKeyError(f"cannot decrypt keystore file {path}: {reason} "
                                f"(wrong password or not an Ethereum keystore)") from None
            found.append(("0x" + bytes(secret).hex(), f"keystore file {path}"))
    keys: list[str] = []
    seen: set[str] = set()
    for key, where in found:
        key = _check(key, where)
        address = Account.from_key(key).address
        if address in seen:
            log.warning("%s repeats executor %s; it is used once", where, address)
            continue
        seen.add(address)
        keys.append(key)
    return keys
