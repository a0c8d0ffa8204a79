"""Pass-through of node methods, so a client can use the bundler's URL for everything: only
an allow-list of read-only methods (Config.forward_methods), eth_sendRawTransaction only if the
operator opts in, and eth_getLogs only over a bounded block range. Anything else the bundler
does not serve is "method not found": the node's unlocked accounts, signing and admin methods
stay out of reach."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..chain.client import NodeClient
from ..errors import InvalidParams

if TYPE_CHECKING:
    from ..config import Config

METHOD_NOT_FOUND = -32601


@dataclass(frozen=True)
class ForwardPolicy:
    methods: frozenset[str]
    get_logs_max_blocks: int = 1000

    @classmethod
    def from_config(cls, config: Config) -> "ForwardPolicy":
        methods = set(config.forward_methods)
        if config.forward_send_raw_transaction:
            methods.add("eth_sendRawTransaction")
        return cls(frozenset(methods), config.get_logs_max_blocks)

    def allows(self, method: str) -> bool:
        return method in self.methods


async def _block_number(node: NodeClient, tag: Any, what: str) -> int:
    """A block number of an eth_getLogs bound: a hex quantity or a tag (read from the node)."""
    if tag is None:
        tag = "latest"
    if not isinstance(tag, str):
        raise InvalidParams(f"invalid {what}: expected a hex block number or a block tag")
    if tag.startswith("0x"):
        try:
            return int(tag, 16)
        except ValueError:
            raise InvalidParams(f"invalid {what}: {tag[:80]!r} is not a hex block number") from None
    if tag == "earliest":
        return 0
    if tag not in ("latest", "pending", "safe", "finalized"):
        raise InvalidParams(f"invalid {what}: unknown block tag {tag[:40]!r}")
    block = await node.call("eth_getBlockByNumber", "latest" if tag == "pending" else tag, False)
    if not block:
        raise InvalidParams(f"invalid {what}: the node has no {tag} block")
    return int(block["number"], 16)


async def check_get_logs(node: NodeClient, params: list, max_blocks: int) -> None:
    """Refuse an eth_getLogs whose range is wider than max_blocks (a blockHash filter is one block)."""
    if len(params) != 1 or not isinstance(params[0], dict):
        raise InvalidParams("invalid params for eth_getLogs: expected one filter object")
    flt = params[0]
    if flt.get("blockHash") is not None:
        return
    start = await _block_number(node, flt.get("fromBlock"), "fromBlock")
    end = await _block_number(node, flt.get("toBlock"), "toBlock")
    if end - start + 1 > max_blocks:
        raise InvalidParams(
            f"eth_getLogs range of {end - start + 1} blocks ({start}..{end}) is larger than the limit of "
            f"{max_blocks} blocks (--get-logs-max-blocks): ask for smaller ranges"
        )
