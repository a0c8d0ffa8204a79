from .client import NodeClient, NodeRpcError

__all__ = ["NodeClient", "NodeRpcError"]
