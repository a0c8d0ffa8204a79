"""The loopback rate-limit exemption is off by default in `bundler run` (a real process)."""
from __future__ import annotations

import os
import urllib.error

import pytest

from helpers.procs import BundlerProcess


def test_bundler_run_rate_limits_loopback_clients_by_default(anvil, tmp_path):
    """Behind a reverse proxy on the same host every client comes from 127.0.0.1: exempting
    loopback by default would exempt them all (`bundler dev` keeps the exemption: test_orphans)."""
    b = BundlerProcess(anvil.url, tmp_path / "data", "0x" + os.urandom(32).hex(),
                       "--rate-limit-per-s", "0.2", "--rate-limit-burst", "3", exempt_loopback=False)
    try:
        # the readiness probe took one token of three
        assert b.call("eth_chainId") and b.call("eth_chainId")
        with pytest.raises(urllib.error.HTTPError) as e:
            b.call("eth_chainId")
        assert e.value.code == 429
    finally:
        b.stop()
