"""The SessionAccount ABI (SessionSpec, EIP-712 enable digest, signature layouts, calldata,
errors, events) has one implementation, in the session SDK: sdk/python/session_sdk/abi.py, which
backends install without the bundler. This module IS that module (`bundler.sessions.abi is
session_sdk.abi`), so the server and every client agree byte for byte."""
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the type checker sees: the SDK module's names
    from session_sdk.abi import *  # noqa: F403
else:
    from session_sdk import abi as _abi

    sys.modules[__name__] = _abi
