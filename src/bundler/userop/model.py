"""The UserOperation model: one implementation, in the session SDK (sdk/python, session_sdk.userop),
which backends install without the bundler."""
from session_sdk.userop import EIP7702_FACTORY, UINT128_MAX, UINT256_MAX, Authorization, UserOperation

__all__ = ["EIP7702_FACTORY", "UINT128_MAX", "UINT256_MAX", "Authorization", "UserOperation"]
