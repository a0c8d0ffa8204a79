from .codec import decode_user_operation, format_user_operation
from .model import EIP7702_FACTORY, Authorization, UserOperation
from .packing import pack, user_op_hash_v07, user_op_hash_v08

__all__ = [
    "Authorization", "EIP7702_FACTORY", "UserOperation", "format_user_operation", "pack",
    "decode_user_operation", "user_op_hash_v07", "user_op_hash_v08",
]
