"""The RPC edge's one error mapper: each kind of exception becomes the JSON-RPC error value
callers see (codes and messages as documented; a bug never leaks more than its type and text)."""
from pjrpc.server.exceptions import InvalidParamsError, JsonRpcError

from bundler.chain.client import NodeRpcError
from bundler.errors import InvalidParams, OpDropped, ValidationRejected
from bundler.rpc.errors import to_rpc_error


def test_bundler_errors_keep_their_code_message_and_data():
    e = to_rpc_error(ValidationRejected("AA23 reverted", {"reason": "x"}), "eth_sendUserOperation")
    assert (e.code, e.message, e.data) == (-32500, "AA23 reverted", {"reason": "x"})
    e = to_rpc_error(InvalidParams("Missing/invalid userOpHash"), "eth_getUserOperationByHash")
    assert (e.code, e.message) == (-32602, "Missing/invalid userOpHash")
    dropped = to_rpc_error(OpDropped("0xab", "replaced", None), "eth_sendUserOperation")
    assert dropped.code == -32500 and dropped.data["status"] == "dropped"


def test_node_errors_pass_through_unchanged():
    e = to_rpc_error(NodeRpcError(3, "execution reverted", "0x08c379a0"), "eth_call")
    assert (e.code, e.message, e.data) == (3, "execution reverted", "0x08c379a0")


def test_params_that_do_not_bind_name_the_method():
    e = to_rpc_error(InvalidParamsError(data="missing argument 'entry_point'"), "eth_sendUserOperation")
    assert e.code == -32602
    assert e.message == "invalid params for eth_sendUserOperation: missing argument 'entry_point'"


def test_a_bug_is_an_internal_error_with_a_bounded_message():
    e = to_rpc_error(KeyError("x" * 2000), "eth_chainId")
    assert e.code == -32603
    assert e.message.startswith("internal error: KeyError: ") and len(e.message) == 500


def test_json_rpc_errors_are_answered_as_raised():
    raised = JsonRpcError(-32601, "method 'x' not found")
    assert to_rpc_error(raised, "x") is raised
