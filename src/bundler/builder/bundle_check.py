"""The whole bundle checked before it is sent: handleOps as a plain eth_call on the node.

Every node answers eth_call, and its EVM runs a 30-op bundle in a few milliseconds where py-evm
needs a couple of hundred; the ERC-7562 rules are enforced by the validations, not here. A
bundle carrying EIP-7702 authorizations is checked in py-evm, which applies them (eth_call
cannot), and so is any bundle whose failure the node does not report as revert data."""
from __future__ import annotations

import logging
from typing import Any

from ..chain.client import NodeClient, NodeRpcError
from ..chain.types import PinnedBlock
from ..entrypoint import EntryPointVersion, handle_ops_calldata
from ..sim.protocol import BundleSimulator
from ..sim.results import BundleResult, decode_failure
from ..userop.model import UserOperation

log = logging.getLogger(__name__)


def _revert_data(data: Any) -> bytes | None:
    """Revert bytes from a node's error `data` (geth/anvil: a hex string; some nest it)."""
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


async def check_bundle(node: NodeClient, simulator: BundleSimulator, ops: list[UserOperation], ep: EntryPointVersion,
                       header: PinnedBlock,
                       *, beneficiary: str, sender: str, gas: int, where: str = "node",
                       timestamp: int | None = None, number: int | None = None) -> BundleResult:
    """`timestamp`: the block timestamp to run at (the next block's, chain.clock): the
    EntryPoint judges validAfter/validUntil against it, so a check at the head block's
    timestamp would pass ops that revert on chain and fail ops that would be valid. `number`:
    the block number to run at (the next block's; an eth_call at the head runs as the head
    block), against which v0.9 judges block ranges. Both go to the node as a block override
    (eth_call's 4th parameter, geth/anvil/reth); a node that refuses it without revert data
    sends the check to py-evm, which runs as the block after `header` with the timestamp."""
    if where != "node" or any(op.eip7702_auth is not None for op in ops):
        return await simulator.simulate_bundle(ops, ep, header, beneficiary=beneficiary, sender=sender, gas=gas,
                                               timestamp=timestamp)
    call = {"from": sender, "to": ep.address, "data": "0x" + handle_ops_calldata(ops, beneficiary).hex(),
            "gas": hex(gas)}
    params: tuple = (call, hex(header.number))
    block = {"time": hex(timestamp)} if timestamp is not None else {}
    if number is not None:
        block["number"] = hex(number)
    if block:
        params += (None, block)
    try:
        await node.call("eth_call", *params)
        return BundleResult(True, 0, block_number=header.number)
    except NodeRpcError as e:
        revert = _revert_data(e.data)
        if revert is None:
            log.info("node refused the bundle check without revert data (%s); checking in py-evm", e.message)
            return await simulator.simulate_bundle(ops, ep, header, beneficiary=beneficiary, sender=sender, gas=gas,
                                                   timestamp=timestamp)
        failure = decode_failure(revert)
        return BundleResult(False, 0, failed_op_index=failure.op_index, failure=failure, block_number=header.number)
