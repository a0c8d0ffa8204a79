from .client import BlockHeader, NodeClient, NodeRpcError

__all__ = ["BlockHeader", "NodeClient", "NodeRpcError"]
