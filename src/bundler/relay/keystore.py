"""Session keys at rest: generated here, encrypted with the operator's master key(s), decrypted
only to sign, never returned or logged.

The cipher is `cryptography`'s Fernet (AES-128-CBC + HMAC-SHA256, authenticated: a tampered or
foreign ciphertext fails to decrypt instead of yielding a wrong key). MultiFernet gives key
rotation: the first master key encrypts, every listed key decrypts, and `rotate` re-encrypts a
token under the first. A decrypted key is also checked against the session address it was
stored for, so a ciphertext copied into another grant's row is refused.

Master keys come from `--relay-master-key` / BUNDLER_RELAY_MASTER_KEY (comma-separated) or
`--relay-master-key-file` (one per line, `#` comments), newest first. `bundler dev` makes a
throwaway one in its data dir when none is given.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import os
from dataclasses import dataclass
from pathlib import Path

from coincurve import PrivateKey
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from session_sdk.signatures import public_key_address

if TYPE_CHECKING:
    from ..config import Config

DEV_MASTER_KEY_FILE = "relay-master.key"


class MasterKeyError(SystemExit):
    """No usable master key: the relay refuses to start (the message never holds a key)."""


class KeyDecryptError(Exception):
    pass


def address_of(secret: bytes) -> str:
    return public_key_address(PrivateKey(secret).public_key.format(compressed=False))


@dataclass(frozen=True)
class SessionKey:
    """A decrypted session key, held only while signing. repr never shows the secret."""

    address: str
    _secret: bytes

    def __repr__(self) -> str:
        return f"SessionKey({self.address})"

    def sign(self, digest: bytes) -> bytes:
        """65-byte r‖s‖v (v 27/28) over the raw digest, low s: what SessionAccount expects."""
        sig = PrivateKey(self._secret).sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes((sig[64] + 27,))


def parse_master_keys(values: list[str], source: str) -> list[bytes]:
    keys = []
    for i, raw in enumerate(values):
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        try:
            Fernet(raw.encode())
        except (ValueError, TypeError):
            raise MasterKeyError(f"relay master key {i + 1} from {source} is not a Fernet key "
                                 f"(32 url-safe base64-encoded bytes; `python -c 'from cryptography.fernet "
                                 f"import Fernet; print(Fernet.generate_key().decode())'` makes one)") from None
        keys.append(raw.encode())
    return keys


def load_master_keys(config: Config, dev_data_dir: str | None = None) -> list[bytes]:
    """Newest first. In dev (dev_data_dir given) a key is created there if none is configured."""
    keys = parse_master_keys(list(config.relay_master_key), "--relay-master-key / BUNDLER_RELAY_MASTER_KEY")
    if config.relay_master_key_file:
        try:
            lines = Path(config.relay_master_key_file).read_text().splitlines()
        except OSError as e:
            raise MasterKeyError(f"cannot read --relay-master-key-file {config.relay_master_key_file}: "
                                 f"{e.strerror}") from None
        keys += parse_master_keys(lines, config.relay_master_key_file)
    if keys:
        return keys
    if dev_data_dir:
        path = Path(dev_data_dir) / DEV_MASTER_KEY_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(Fernet.generate_key().decode() + "\n")
        return parse_master_keys(path.read_text().splitlines(), str(path))
    raise MasterKeyError("the relay needs a master key: set BUNDLER_RELAY_MASTER_KEY or --relay-master-key-file "
                         "(docs/relay.md, key storage)")


class KeyStore:
    def __init__(self, master_keys: list[bytes]):
        if not master_keys:
            raise MasterKeyError("no relay master key")
        self._cipher = MultiFernet([Fernet(k) for k in master_keys])

    def new_key(self) -> tuple[str, str]:
        """(session address, encrypted key) of a fresh secp256k1 key."""
        secret = os.urandom(32)
        return address_of(secret), self._cipher.encrypt(secret).decode()

    def open(self, encrypted: str, address: str) -> SessionKey:
        try:
            secret = self._cipher.decrypt(encrypted.encode())
        except InvalidToken:
            raise KeyDecryptError(f"the key of session {address} does not decrypt with the configured master "
                                  f"keys (wrong or missing master key, or tampered data)") from None
        if len(secret) != 32 or address_of(secret) != address:
            raise KeyDecryptError(f"the stored key does not belong to session {address}")
        return SessionKey(address, secret)

    def rotate(self, encrypted: str) -> str:
        """The same key encrypted under the newest master key."""
        try:
            return self._cipher.rotate(encrypted.encode()).decode()
        except InvalidToken:
            raise KeyDecryptError("a stored key does not decrypt with the configured master keys") from None

    def encrypt_secret(self, secret: bytes) -> str:
        return self._cipher.encrypt(secret).decode()

    def decrypt_secret(self, encrypted: str) -> bytes:
        try:
            return self._cipher.decrypt(encrypted.encode())
        except InvalidToken:
            raise KeyDecryptError("relay data does not decrypt with the configured master keys") from None
