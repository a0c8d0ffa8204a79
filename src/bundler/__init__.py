"""Self-hosted ERC-4337 bundler with session-aware validation."""
import os

# py-evm and eth-utils hash through eth_hash; the pysha3 backend is ~6x faster than
# pycryptodome for 32-byte inputs (measured, see DESIGN.md). Must be chosen before import.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

__version__ = "0.1.0"
CLIENT_VERSION = f"bundler-py/{__version__}"
