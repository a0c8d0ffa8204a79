"""The paymaster signer: the key whose signature SponsorPaymaster accepts.

Handled like the executor keys (builder.keys): read from BUNDLER_PAYMASTER_SIGNER_KEY or
--paymaster-signer-key-file (a flag would show in `ps`), checked without ever quoting it, and
kept inside this object only: its repr, errors and logs name the address, never the key.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from eth_account import Account

from ..builder.keys import ExecutorKeyError, check_key, read_secret_file
from .data import eip191_digest

if TYPE_CHECKING:
    from ..config import Config


class PaymasterSigner:
    __slots__ = ("_account", "address")

    def __init__(self, key: str):
        self._account = Account.from_key(key)
        self.address: str = self._account.address.lower()

    def __repr__(self) -> str:
        return f"PaymasterSigner({self.address})"

    def sign(self, message_hash: bytes) -> bytes:
        """65-byte r‖s‖v (v 27/28, low s) over the EIP-191 digest of `message_hash`."""
        return bytes(self._account.unsafe_sign_hash(eip191_digest(message_hash)).signature)


def load_signer(config: Config) -> PaymasterSigner | None:
    """The configured signer, None when no key is given (no sponsorship then)."""
    if config.paymaster_signer_key_file:
        text = read_secret_file(config.paymaster_signer_key_file, "paymaster signer key file")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if len(lines) != 1:
            raise ExecutorKeyError(f"{config.paymaster_signer_key_file} must hold exactly one key "
                                   f"(found {len(lines)} lines)")
        return PaymasterSigner(check_key(lines[0], f"the key in {config.paymaster_signer_key_file}"))
    if config.paymaster_signer_key:
        return PaymasterSigner(check_key(config.paymaster_signer_key,
                                         "--paymaster-signer-key / BUNDLER_PAYMASTER_SIGNER_KEY"))
    return None
