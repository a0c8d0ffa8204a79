"""SessionAccount on a dev chain: compile + deploy, build and sign owner/session/enable ops, send
handleOps for real or as eth_call, decode what the EntryPoint and the account say.

    dep = deploy_session_contracts(url)                      # implementations + factories (+ TestERC20)
    acct = SessionAccountHandle.create(url, chain_id, V07, dep)   # deployed clone, random owner key
    op = acct.sign_owner(acct.build(encode_grant_session(spec)))
    handle_ops(url, V07, [op])                               # real transaction, returns OpResults
    err = simulate_failure(url, V07, [op])                   # eth_call: FailedOp / FailedOpWithRevert

Everything is synchronous JSON-RPC (urllib); anvil automines, so a receipt is there at once.
"""
from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from eth_abi import decode, encode
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import function_signature_to_4byte_selector
from eth_utils import to_checksum_address

from bundler import contracts_build
from bundler.devchain.anvil import ANVIL_ACCOUNT0, ANVIL_ACCOUNT0_KEY
from bundler.devchain.sessions import SessionDeployment, deploy_sessions
from bundler.entrypoint import EntryPointVersion
from session_sdk.types import SESSION_SPEC_T, GasPolicy, SessionSpec
from session_sdk.eip712 import eip712_spec_digest
from session_sdk.signatures import (
    encode_enable_signature, encode_owner_signature, encode_session_signature, sign_digest,
)
from session_sdk.calldata import encode_create_account
from session_sdk.addresses import account_address
from session_sdk.events import TOPIC_SESSION_USED, SessionUsed, decode_session_used
from session_sdk.reverts import SessionAccountError, decode_error
from bundler.userop import EIP7702_FACTORY, UserOperation, pack
from bundler.userop.packing import PACKED_USEROP_TYPE

REPO = Path(__file__).resolve().parents[2]

# A gas budget for test sessions: one op may cost up to 1 ETH (test ops' gas limits x 3 gwei stay
# far below), no cumulative budget, no paymaster. SessionSpec's default allows no gas at all.
TEST_GAS = GasPolicy(max_cost_per_op=10**18)


selector = function_signature_to_4byte_selector


SEL_HANDLE_OPS = selector(f"handleOps({PACKED_USEROP_TYPE}[],address)")
SEL_GET_NONCE = selector("getNonce(address,uint192)")
SEL_VALIDATE_USER_OP = selector(f"validateUserOp({PACKED_USEROP_TYPE},bytes32,uint256)")
SEL_FAILED_OP = selector("FailedOp(uint256,string)")
SEL_FAILED_OP_WITH_REVERT = selector("FailedOpWithRevert(uint256,string,bytes)")
TOPIC_USER_OPERATION_EVENT = keccak(b"UserOperationEvent(bytes32,address,address,uint256,bool,uint256,uint256)")
TOPIC_USER_OPERATION_REVERT_REASON = keccak(b"UserOperationRevertReason(bytes32,address,uint256,bytes)")

# ---------------------------------------------------------------- JSON-RPC


class RpcError(Exception):
    def __init__(self, method: str, error: dict):
        super().__init__(f"{method}: {error.get('code')} {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message", "")
        data = error.get("data")
        self.data = bytes.fromhex(data[2:]) if isinstance(data, str) and data.startswith("0x") else b""


def rpc(url: str, method: str, params: list, timeout: float = 30.0):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RpcError(method, answer["error"])
    return answer["result"]


def eth_call(url: str, to: str, data: bytes, sender: str | None = None, value: int = 0) -> bytes:
    tx = {"to": to, "data": "0x" + data.hex(), "gas": hex(30_000_000)}
    if sender:
        tx["from"] = sender
    if value:
        tx["value"] = hex(value)
    return bytes.fromhex(rpc(url, "eth_call", [tx, "latest"])[2:])


def wait_receipt(url: str, tx_hash: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = rpc(url, "eth_getTransactionReceipt", [tx_hash])
        if receipt:
            return receipt
        time.sleep(0.01)
    raise TimeoutError(f"transaction {tx_hash} not mined")


def send_tx(url: str, to: str, data: bytes = b"", value: int = 0, sender: str = ANVIL_ACCOUNT0,
            gas: int = 10_000_000) -> dict:
    """A transaction from an unlocked dev account; raises if it reverts."""
    tx_hash = rpc(url, "eth_sendTransaction", [{
        "from": sender, "to": to, "data": "0x" + data.hex(), "value": hex(value), "gas": hex(gas),
    }])
    receipt = wait_receipt(url, tx_hash)
    if receipt["status"] != "0x1":
        raise RuntimeError(f"transaction to {to} reverted: {receipt}")
    return receipt


def block_timestamp(url: str) -> int:
    return int(rpc(url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)


def advance_time(url: str, seconds: int) -> int:
    """Move the chain clock forward and mine a block; returns the new block timestamp."""
    rpc(url, "evm_increaseTime", [seconds])
    rpc(url, "evm_mine", [])
    return block_timestamp(url)


def get_code(url: str, address: str) -> bytes:
    return bytes.fromhex(rpc(url, "eth_getCode", [address, "latest"])[2:])


def get_balance(url: str, address: str) -> int:
    return int(rpc(url, "eth_getBalance", [address, "latest"]), 16)


def set_balance(url: str, address: str, wei: int) -> None:
    rpc(url, "anvil_setBalance", [address, hex(wei)])


def new_key() -> tuple[str, str]:
    """(private key hex, lower-case address)."""
    acct = Account.create()
    return "0x" + bytes(acct.key).hex(), acct.address.lower()


# ---------------------------------------------------------------- deployment


def compile_contracts() -> None:
    """node contracts/compile.mjs (returns at once when build/contracts is up to date)."""
    done = subprocess.run(["node", str(REPO / "contracts" / "compile.mjs")], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"contracts/compile.mjs failed:\n{done.stdout}\n{done.stderr}")
    contracts_build.load_contract.cache_clear()


def deploy_session_contracts(url: str, with_token: bool = True) -> SessionDeployment:
    """One SessionAccount implementation + factory per EntryPoint version, through the CREATE2
    deployer (same addresses on every dev chain: the bundler's defaults), and a TestERC20."""
    compile_contracts()
    return deploy_sessions(url, with_token=with_token)


# ---------------------------------------------------------------- EntryPoint interaction


def get_nonce(url: str, ep: EntryPointVersion, sender: str, key: int = 0) -> int:
    out = eth_call(url, ep.address, SEL_GET_NONCE + encode(["address", "uint192"], [sender, key]))
    return decode(["uint256"], out)[0]


def handle_ops_calldata(ops: list[UserOperation], beneficiary: str = ANVIL_ACCOUNT0) -> bytes:
    return SEL_HANDLE_OPS + encode([f"{PACKED_USEROP_TYPE}[]", "address"], [[pack(op) for op in ops], beneficiary])


@dataclass
class OpResult:
    user_op_hash: bytes
    sender: str
    success: bool
    revert_reason: bytes  # from UserOperationRevertReason, if the execution reverted
    logs: list[dict]  # every log of the transaction (session events included)


def _op_results(receipt: dict) -> list[OpResult]:
    reasons = {}
    for log in receipt["logs"]:
        if bytes.fromhex(log["topics"][0][2:]) == TOPIC_USER_OPERATION_REVERT_REASON:
            _nonce, reason = decode(["uint256", "bytes"], bytes.fromhex(log["data"][2:]))
            reasons[log["topics"][1]] = reason
    out = []
    for log in receipt["logs"]:
        if bytes.fromhex(log["topics"][0][2:]) == TOPIC_USER_OPERATION_EVENT:
            _nonce, success, _cost, _gas = decode(["uint256", "bool", "uint256", "uint256"],
                                                  bytes.fromhex(log["data"][2:]))
            out.append(OpResult(bytes.fromhex(log["topics"][1][2:]), "0x" + log["topics"][2][-40:], success,
                                reasons.get(log["topics"][1], b""), receipt["logs"]))
    return out


def handle_ops(url: str, ep: EntryPointVersion, ops: list[UserOperation]) -> list[OpResult]:
    """handleOps as a real transaction from anvil's account 0; raises HandleOpsReverted (with the
    decoded FailedOp and the account's error) if it would revert."""
    data = handle_ops_calldata(ops)
    try:  # an eth_call first surfaces FailedOp instead of a bare reverted receipt
        eth_call(url, ep.address, data, sender=ANVIL_ACCOUNT0)
    except RpcError as e:
        raise HandleOpsReverted(decode_failed_op(e.data), e) from None
    return _op_results(send_tx(url, ep.address, data))


def handle_ops_with_authorizations(url: str, chain_id: int, ep: EntryPointVersion, ops: list[UserOperation],
                                   authorizations: list) -> list[OpResult]:
    """handleOps in an EIP-7702 (type 4) transaction carrying signed authorizations."""
    sender = Account.from_key(ANVIL_ACCOUNT0_KEY)
    base_fee = int(rpc(url, "eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    tx = {
        "type": 4,
        "chainId": chain_id,
        "nonce": int(rpc(url, "eth_getTransactionCount", [sender.address, "pending"]), 16),
        "to": to_checksum_address(ep.address),
        "value": 0,
        "data": handle_ops_calldata(ops),
        "gas": 10_000_000,
        "maxFeePerGas": 2 * base_fee + 10**9,
        "maxPriorityFeePerGas": 10**9,
        "authorizationList": authorizations,
    }
    signed = sender.sign_transaction(tx)
    tx_hash = rpc(url, "eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
    receipt = wait_receipt(url, tx_hash)
    if receipt["status"] != "0x1":
        raise RuntimeError(f"handleOps (type 4) reverted: {receipt}")
    return _op_results(receipt)


@dataclass
class FailedOp:
    op_index: int
    reason: str  # "AA23 reverted", "AA24 signature error", ...
    inner: bytes  # the account's revert data (FailedOpWithRevert), else b""

    @property
    def error(self) -> SessionAccountError | None:
        return decode_error(self.inner)


class HandleOpsReverted(AssertionError):
    def __init__(self, failed: FailedOp | None, cause: RpcError):
        detail = f"{failed} {failed.error}" if failed else f"{cause} data={cause.data.hex()}"
        super().__init__(f"handleOps would revert: {detail}")
        self.failed = failed


def decode_failed_op(data: bytes) -> FailedOp | None:
    if data[:4] == SEL_FAILED_OP:
        index, reason = decode(["uint256", "string"], data[4:])
        return FailedOp(index, reason, b"")
    if data[:4] == SEL_FAILED_OP_WITH_REVERT:
        index, reason, inner = decode(["uint256", "string", "bytes"], data[4:])
        return FailedOp(index, reason, inner)
    return None


def simulate_failure(url: str, ep: EntryPointVersion, ops: list[UserOperation]) -> FailedOp:
    """eth_call handleOps, expecting it to revert with FailedOp / FailedOpWithRevert."""
    try:
        eth_call(url, ep.address, handle_ops_calldata(ops), sender=ANVIL_ACCOUNT0)
    except RpcError as e:
        failed = decode_failed_op(e.data)
        if failed is None:
            raise AssertionError(f"handleOps reverted without FailedOp: {e} data={e.data.hex()}") from None
        return failed
    raise AssertionError("handleOps did not revert")


def validation_trace_call(ep: EntryPointVersion, op: UserOperation, op_hash: bytes, missing: int = 0) -> dict:
    """The call the EntryPoint makes into the account (for eth_call / debug_traceCall)."""
    data = SEL_VALIDATE_USER_OP + encode([PACKED_USEROP_TYPE, "bytes32", "uint256"], [pack(op), op_hash, missing])
    return {"from": ep.address, "to": op.sender, "data": "0x" + data.hex(), "gas": hex(5_000_000)}


def call_validate(url: str, ep: EntryPointVersion, op: UserOperation, op_hash: bytes) -> int:
    """validateUserOp as the EntryPoint calls it (eth_call): the validationData."""
    out = rpc(url, "eth_call", [validation_trace_call(ep, op, op_hash), "latest"])
    return int(out, 16)


# ---------------------------------------------------------------- accounts and ops


@dataclass
class SessionAccountHandle:
    url: str
    chain_id: int
    ep: EntryPointVersion
    address: str
    owner_key: str
    factory: str | None = None  # set while not deployed: the next op carries initCode
    salt: int = 0
    delegate: str | None = None  # EIP-7702: the implementation the EOA delegates to
    verification_gas: int = 1_500_000
    call_gas: int = 1_500_000

    @classmethod
    def counterfactual(cls, url: str, chain_id: int, ep: EntryPointVersion, dep: SessionDeployment,
                       owner_key: str | None = None, salt: int = 0, fund: int = 10**19) -> "SessionAccountHandle":
        owner_key = owner_key or new_key()[0]
        owner = Account.from_key(owner_key).address.lower()
        factory = dep.factories[ep.version]
        address = account_address(factory, dep.implementations[ep.version], owner, salt, dep.proxy_creation_code)
        if fund:
            set_balance(url, address, fund)
        return cls(url, chain_id, ep, address, owner_key, factory=factory, salt=salt)

    @classmethod
    def create(cls, url: str, chain_id: int, ep: EntryPointVersion, dep: SessionDeployment,
               owner_key: str | None = None, salt: int = 0, fund: int = 10**19) -> "SessionAccountHandle":
        """Deployed directly through the factory (no UserOperation)."""
        acct = cls.counterfactual(url, chain_id, ep, dep, owner_key, salt, fund)
        send_tx(url, acct.factory, encode_create_account(acct.owner, salt))
        acct.factory = None
        return acct

    @property
    def owner(self) -> str:
        return Account.from_key(self.owner_key).address.lower()

    def nonce(self, key: int = 0) -> int:
        return get_nonce(self.url, self.ep, self.address, key)

    def build(self, call_data: bytes, *, nonce: int | None = None, verification_gas: int | None = None,
              eip7702_init: bool = False) -> UserOperation:
        factory, factory_data = None, b""
        if eip7702_init:
            factory = EIP7702_FACTORY
        elif self.factory is not None:
            factory, factory_data = self.factory, encode_create_account(self.owner, self.salt)
        return UserOperation(
            sender=self.address,
            nonce=self.nonce() if nonce is None else nonce,
            call_data=call_data,
            call_gas_limit=self.call_gas,
            verification_gas_limit=verification_gas or self.verification_gas,
            pre_verification_gas=60_000,
            max_fee_per_gas=3 * 10**9,
            max_priority_fee_per_gas=10**9,
            signature=b"",
            factory=factory,
            factory_data=factory_data,
        )

    def op_hash(self, op: UserOperation) -> bytes:
        return self.ep.user_op_hash(op, self.chain_id, self.delegate)

    def sign_owner(self, op: UserOperation, key: str | None = None) -> UserOperation:
        sig = sign_digest(key or self.owner_key, self.op_hash(op))
        return replace(op, signature=encode_owner_signature(sig))

    def sign_session(self, op: UserOperation, session_key: str, period_index: int = 0,
                     signer: str | None = None) -> UserOperation:
        """Mode 0x01. `signer` overrides the claimed session (to sign with a key that is not it)."""
        signer = signer or Account.from_key(session_key).address.lower()
        sig = sign_digest(session_key, self.op_hash(op))
        return replace(op, signature=encode_session_signature(signer, period_index, sig))

    def sign_enable(self, op: UserOperation, spec: SessionSpec, session_key: str, *, nonce: int = 0,
                    period_index: int = 0, owner_key: str | None = None, epoch: int = 0) -> UserOperation:
        """Mode 0x02: owner's EIP-712 grant of `spec` (grant nonce `nonce`, account epoch `epoch`,
        plus one when the op carries an EIP-7702 authorization) + the session signature."""
        digest = eip712_spec_digest(spec, nonce, self.address, self.chain_id, epoch)
        owner_sig = sign_digest(owner_key or self.owner_key, digest)
        session_sig = sign_digest(session_key, self.op_hash(op))
        return replace(op, signature=encode_enable_signature(spec, nonce, owner_sig, period_index, session_sig))

    # views -------------------------------------------------------------

    def call(self, signature: str, types: list[str], values: list, out: list[str]):
        data = selector(signature) + encode(types, values)
        return decode(out, eth_call(self.url, self.address, data))

    def get_session(self, signer: str) -> tuple[SessionSpec, int, int, int]:
        """(spec, status, grantNonce, usageCount)."""
        (info,) = self.call("getSession(address)", ["address"], [signer],
                            [f"({SESSION_SPEC_T},uint8,uint64,uint32,uint32)"])
        return SessionSpec.from_abi(info[0]), info[1], info[2], info[3]

    def get_usage(self, signer: str) -> tuple:
        """(usageCount, callValue[(period, used)], callArgs[[(period, used)]], transferValue[...])."""
        lu = "(uint48,uint256)"
        (u,) = self.call("getUsage(address)", ["address"], [signer], [f"(uint32,{lu}[],{lu}[][],{lu}[],{lu})"])
        return u

    def remaining(self, signer: str, scope: int, policy: int, constraint: int = 0, period: int = 0) -> int:
        return self.call("remaining(address,uint8,uint256,uint256,uint48)",
                         ["address", "uint8", "uint256", "uint256", "uint48"],
                         [signer, scope, policy, constraint, period], ["uint256"])[0]

    def grant_nonce(self, signer: str) -> int:
        return self.call("grantNonce(address)", ["address"], [signer], ["uint64"])[0]

    def epoch(self) -> int:
        return self.call("epoch()", [], [], ["uint32"])[0]


def session_events(result: OpResult, account: str) -> list[SessionUsed]:
    out = []
    for log in result.logs:
        if log["address"].lower() == account and bytes.fromhex(log["topics"][0][2:]) == TOPIC_SESSION_USED:
            out.append(decode_session_used([bytes.fromhex(t[2:]) for t in log["topics"]],
                                           bytes.fromhex(log["data"][2:])))
    return out


def erc20_transfer(to: str, amount: int) -> bytes:
    return selector("transfer(address,uint256)") + encode(["address", "uint256"], [to, amount])


def erc20_balance(url: str, token: str, who: str) -> int:
    return decode(["uint256"], eth_call(url, token, selector("balanceOf(address)") + encode(["address"], [who])))[0]


def erc20_mint(url: str, token: str, to: str, amount: int) -> None:
    send_tx(url, token, selector("mint(address,uint256)") + encode(["address", "uint256"], [to, amount]))


def set_delegation(url: str, chain_id: int, eoa_key: str, implementation: str, data: bytes = b"",
                   self_sent: bool = False) -> dict:
    """A type-4 transaction whose authorization, signed by the EOA, delegates it to
    `implementation` (the zero address clears the delegation); the transaction then calls the EOA
    with `data` (run with the new code, e.g. revokeAllSessions()). Sponsored by anvil's account 0,
    or sent by the EOA itself (self_sent: then msg.sender is the owner, and the authorization
    names the nonce after the transaction's). Returns the receipt; raises if it reverts."""
    eoa = Account.from_key(eoa_key).address
    eoa_nonce = int(rpc(url, "eth_getTransactionCount", [eoa, "latest"]), 16)
    auth = Account.sign_authorization(
        {"chainId": chain_id, "address": to_checksum_address(implementation),
         "nonce": eoa_nonce + (1 if self_sent else 0)}, eoa_key)
    sponsor = Account.from_key(eoa_key if self_sent else ANVIL_ACCOUNT0_KEY)
    base_fee = int(rpc(url, "eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    tx = {"type": 4, "chainId": chain_id, "to": eoa, "value": 0, "data": data, "gas": 300_000,
          "nonce": int(rpc(url, "eth_getTransactionCount", [sponsor.address, "pending"]), 16),
          "maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9, "authorizationList": [auth]}
    raw = sponsor.sign_transaction(tx).raw_transaction
    receipt = wait_receipt(url, rpc(url, "eth_sendRawTransaction", ["0x" + bytes(raw).hex()]))
    if receipt["status"] != "0x1":
        raise RuntimeError(f"type-4 transaction reverted: {receipt}")
    return receipt


def send_tx_status(url: str, to: str, data: bytes, sender: str, gas: int = 10_000_000) -> str:
    """A transaction from an unlocked (or impersonated) account; its receipt status ("0x1"/"0x0")."""
    tx_hash = rpc(url, "eth_sendTransaction", [{"from": sender, "to": to, "data": "0x" + data.hex(), "gas": hex(gas)}])
    return wait_receipt(url, tx_hash)["status"]
