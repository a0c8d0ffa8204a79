"""The Python session SDK (sdk/python) as a distribution of its own: it imports without the
bundler or py-evm, declares only its four dependencies, is the very module the server uses for
the encoding, and reads / writes the same session strings as the TypeScript SDK."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import pytest

from helpers.dev import REPO, python_path

NODE = shutil.which("node")


def test_sdk_imports_without_the_bundler_or_py_evm():
    probe = ("import sys, session_sdk, session_sdk.account, session_sdk.client;"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'bundler', 'evm', 'web3', 'eth_tester', 'aiohttp'}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd="/", capture_output=True, text=True,
                          env={"PYTHONPATH": python_path("sdk/python"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_sdk_declares_only_its_four_dependencies():
    project = tomllib.loads((REPO / "sdk/python/pyproject.toml").read_text())["project"]
    names = {d.split("==")[0] for d in project["dependencies"]}
    assert names == {"eth-account", "eth-abi", "coincurve", "urllib3"}
    server = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "session-account-sdk==" + project["version"] in server
    # the same pins as the server, so one environment satisfies both
    assert set(project["dependencies"]) <= set(server)


def test_the_server_uses_the_sdks_encoding():
    import importlib.util

    import session_sdk
    from bundler.sessions import policy, service
    from bundler.userop import UserOperation
    from bundler.userop import packing
    from session_sdk import eip712, signatures
    from session_sdk import types as spec_types

    # the server has no encoding of its own: its evaluator and service run the SDK's functions
    assert importlib.util.find_spec("bundler.sessions.abi") is None
    assert policy.decode_signature is signatures.decode_signature
    assert policy.SessionSpec is spec_types.SessionSpec
    assert service.eip712_spec_digest is eip712.eip712_spec_digest
    assert UserOperation is session_sdk.UserOperation
    assert packing.user_op_hash_v08 is session_sdk.packing.user_op_hash_v08


@pytest.mark.skipif(NODE is None, reason="node is not on PATH")
def test_python_serialized_session_reads_back_in_typescript():
    from session_sdk import ArgConstraint, CallPolicy, Condition, GasPolicy, Limit, SessionSpec, TransferPolicy
    from session_sdk.eip712 import spec_struct_hash
    from session_sdk.serialize import SessionGrant, deserialize_session, serialize_session, spec_to_json

    spec = SessionSpec(
        signer="0x" + "51" * 20, valid_after=10, valid_until=2**40, period=3600, usage_limit=5,
        call_policies=(CallPolicy(target="0x" + "70" * 20, selector=bytes.fromhex("a9059cbb"), constraints=(
            ArgConstraint.typed(Condition.EQ, 0, "address", "0x" + "de" * 20),
            ArgConstraint.typed(Condition.LTE, 1, "uint96", 2**90, Limit.allowance(10**24)),
        )),),
        transfer_policies=(TransferPolicy(max_value_per_use=10**17, value_limit=Limit.lifetime(10**18)),),
        gas=GasPolicy(max_cost_per_op=10**16, cost_limit=Limit.lifetime(10**17), paymasters=("0x" + "99" * 20,)),
    )
    grant = SessionGrant(chain_id=1337, entry_point="0.8", account="0x" + "aa" * 20, owner="0x" + "bb" * 20, spec=spec,
                         factory="0x" + "cc" * 20, salt=7, enable=(b"\x01" * 65, 3))
    text = serialize_session(grant)
    assert deserialize_session(text) == grant
    script = (f"import('{(REPO / 'sdk/ts/dist/index.js').as_posix()}').then(m => {{"
              f"const g = m.deserializeSession(process.argv[1]);"
              f"process.stdout.write(JSON.stringify({{spec: m.specToJson(g.spec), salt: String(g.salt), nonce: String(g.enable.nonce),"
              f" hash: m.specHash(g.spec)}}));}})")
    done = subprocess.run([NODE, "-e", script, text], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["salt"] == "7" and seen["nonce"] == "3"
    # the same spec on both sides, and the same EIP-712 struct hash
    assert _same(seen["spec"], spec_to_json(spec)), (seen["spec"], spec_to_json(spec))
    assert seen["hash"] == "0x" + spec_struct_hash(spec).hex()


def _same(a, b) -> bool:
    """One spec's JSON from the two SDKs: a number may be written as a number or as 0x-hex, and
    hex case may differ (checksummed addresses)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))

    def norm(v):
        return int(v, 16) if isinstance(v, str) and v.startswith("0x") else v
    return norm(a) == norm(b)


@pytest.fixture(scope="module")
def dev():
    from helpers.dev import start_dev_bundler

    d = start_dev_bundler()
    try:
        yield d
    finally:
        d.stop()


@pytest.mark.parametrize("version", ["0.8", "0.9"])
def test_python_owner_mode_eip7702_grant_with_builders_then_session_ops(dev, version):
    """A backend that holds the user's EOA key: its first owner op carries the EIP-7702
    authorization and grants a session built with the Python builders; the session key then
    transfers within the typed constraints and is refused past them."""
    from eth_account import Account

    from helpers.procs import call
    from session_sdk import Call, RpcError, SessionAccount, SessionKey
    from session_sdk.addresses import delegation_code
    from session_sdk.calldata import encode_grant_session
    from session_sdk.policies import erc20_transfer_policy, lifetime, session_spec

    eoa = Account.create()
    owner_key = "0x" + bytes(eoa.key).hex()
    call(dev.node_url, "anvil_setBalance", eoa.address, hex(10**18))
    impl = dev.entry_points[version]["SessionAccount"]
    owner = SessionAccount(bundler=dev.bundler_url, node=dev.node_url, entry_point_version=version, owner=eoa.address,
                           eip7702_delegate=impl, owner_key=owner_key)
    assert owner.address == eoa.address.lower() and not owner.deployed()
    session_key = Account.create()
    dex = Account.create().address.lower()
    now = int(call(dev.node_url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
    spec = session_spec(session_key.address, valid_until=now + 600, policies=[
        erc20_transfer_policy(dev.token, to=dex, max_per_transfer=40, limit=lifetime(50))])
    mint = Call(dev.token, 0, bytes.fromhex("40c10f19") + bytes(12) + bytes.fromhex(owner.address[2:])
                + (1000).to_bytes(32, "big"))
    receipt = owner.send_and_wait([Call(owner.address, 0, encode_grant_session(spec)), mint])
    assert receipt["success"] is True
    assert owner.deployed() and owner.code() == delegation_code(impl)

    session = SessionAccount(bundler=dev.bundler_url, node=dev.node_url, entry_point_version=version, owner=eoa.address,
                             eip7702_delegate=impl, session=SessionKey("0x" + bytes(session_key.key).hex(), spec))

    def transfer(to: str, amount: int) -> Call:
        return Call(dev.token, 0, bytes.fromhex("a9059cbb") + bytes(12) + bytes.fromhex(to[2:]) + amount.to_bytes(32, "big"))

    assert session.send_and_wait([transfer(dex, 40)])["success"] is True
    with pytest.raises(RpcError) as e:
        session.send([transfer(dex, 20)])
    assert e.value.refusal.rule == "SessionCumulativeLimitExceeded" and e.value.refusal.remaining == 10
    with pytest.raises(RpcError) as e:
        session.send([transfer(Account.create().address.lower(), 1)])
    assert e.value.refusal.rule == "SessionArgConstraintFailed"


def test_python_v09_enable_mode_deploys_grants_and_mints_then_session_mode(dev):
    """EntryPoint v0.9 from the Python client: the owner's enable signature (EIP-712) rides on the
    session key's first op, which deploys the account behind v0.9's factory, grants and mints;
    the next op is plain session mode; the op hash is v0.9's (the bundler's receipt names it)."""
    from eth_account import Account

    from helpers.procs import call
    from session_sdk import Call, SessionAccount, SessionKey, enable_signature
    from session_sdk.signatures import decode_signature
    from session_sdk.policies import call_policy, lifetime, lte, session_spec

    owner = Account.create()
    session_key = "0x" + bytes(Account.create().key).hex()
    v = dev.entry_points["0.9"]
    probe = SessionAccount(bundler=dev.bundler_url, node=dev.node_url, entry_point_version="0.9", owner=owner.address,
                           factory=v["SessionAccountFactory"], owner_key="0x" + bytes(owner.key).hex())
    call(dev.node_url, "anvil_setBalance", probe.address, hex(10**18))
    now = int(call(dev.node_url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
    signer = Account.from_key(session_key).address
    spec = session_spec(signer, valid_until=now + 600, policies=[
        call_policy(dev.token, "mint(address to, uint256 amount)", args={"amount": lte(100, lifetime(150))})])
    ownersig = enable_signature("0x" + bytes(owner.key).hex(), spec, probe.address, probe.chain_id, 0)
    session = SessionAccount(bundler=dev.bundler_url, node=dev.node_url, entry_point_version="0.9", owner=owner.address,
                             factory=v["SessionAccountFactory"], session=SessionKey(session_key, spec, (ownersig, 0)))
    assert session.address == probe.address and not session.deployed()
    mint = Call(dev.token, 0, bytes.fromhex("40c10f19") + bytes(12) + bytes.fromhex(session.address[2:]) + (100).to_bytes(32, "big"))
    op = session.sign(session.estimate(session.build([mint])))
    assert decode_signature(op.signature).__class__.__name__ == "EnableSignature"
    op_hash = session.bundler.send_user_operation(op, session.entry_point.address)
    assert op_hash == "0x" + session.user_op_hash(op).hex()
    receipt = session.bundler.wait_for_receipt(op_hash)
    assert receipt["success"] is True and session.deployed()
    assert session.stub_signature()[0] == 1  # granted: plain session mode from now on
    assert session.send_and_wait([Call(dev.token, 0, mint.data[:-32] + (50).to_bytes(32, "big"))])["success"] is True
    balance = call(dev.node_url, "eth_call", {"to": dev.token, "data": "0x70a08231" + "00" * 12 + session.address[2:]}, "latest")
    assert int(balance, 16) == 150


@pytest.mark.parametrize("version", ["0.7", "0.8", "0.9"])
def test_python_owner_ops_sponsored_through_the_paymaster_client(dev, version):
    """SessionAccount(paymaster=PaymasterClient(...)): an unfunded account's first owner op (it
    deploys the account) is paid by bundler dev's SponsorPaymaster through pm_* on /paymaster with
    an ERC-7677 context; the account's ETH stays 0. An unknown policyId is refused before
    anything is sent."""
    from eth_account import Account

    from helpers.procs import call
    from session_sdk import Call, PaymasterClient, RpcError, SessionAccount

    owner = Account.create()

    def account(context) -> SessionAccount:
        return SessionAccount(bundler=dev.bundler_url, node=dev.node_url, entry_point_version=version, owner=owner.address,
                              factory=dev.entry_points[version]["SessionAccountFactory"],
                              owner_key="0x" + bytes(owner.key).hex(),
                              paymaster=PaymasterClient(dev.bundler_url + "/paymaster", context=context))

    mint = Call(dev.token, 0, bytes.fromhex("40c10f19") + bytes(12) + bytes.fromhex(account(None).address[2:])
                + (7).to_bytes(32, "big"))
    with pytest.raises(RpcError) as e:
        account({"policyId": "no-such-policy"}).send([mint])
    assert e.value.code == -32602 and "unknown sponsorship policy" in e.value.message
    sponsored = account({"policyId": "sponsor-everything"})
    receipt = sponsored.send_and_wait([mint])
    assert receipt["success"] is True and sponsored.deployed()
    assert receipt["paymaster"].lower() == dev.paymasters[version].lower()
    assert int(call(dev.node_url, "eth_getBalance", sponsored.address, "latest"), 16) == 0
    if version == "0.9":
        # v0.9's paymasterSignature, outside the userOpHash: the client carries it as given
        separate = account({"policyId": "sponsor-everything", "separateSignature": True})
        op = separate.sign(separate.estimate(separate.build([mint])))
        assert len(op.paymaster_signature) == 65
        assert separate.bundler.wait_for_receipt(separate.bundler.send_user_operation(op, separate.entry_point.address))["success"]
        assert int(call(dev.node_url, "eth_getBalance", sponsored.address, "latest"), 16) == 0


def test_python_erc1271_signatures_verify_on_the_owners_account_only(dev):
    """session_sdk.erc1271 signs for isValidSignature (ERC-7739): the owner's message and typed
    data signatures verify on the account they were made for (eth_call on the dev chain), not on
    a second account of the same owner; a session key's are refused; the bytes are the TypeScript
    SDK's for the same key and message."""
    from eth_abi import decode, encode
    from eth_account import Account
    from eth_account.messages import encode_typed_data
    from eth_utils import keccak

    from helpers.procs import call, wait_for
    from session_sdk import erc1271
    from session_sdk.calldata import encode_create_account
    from session_sdk.signatures import sign_digest

    owner = Account.create()
    owner_key = "0x" + bytes(owner.key).hex()
    factory = dev.entry_points["0.9"]["SessionAccountFactory"]
    funder = call(dev.node_url, "eth_accounts")[0]
    accounts = []
    for salt in (0, 1):
        tx = call(dev.node_url, "eth_sendTransaction", {"from": funder, "to": factory,
                                                        "data": "0x" + encode_create_account(owner.address, salt).hex()})
        receipt = wait_for(lambda: call(dev.node_url, "eth_getTransactionReceipt", tx), what="createAccount mined")
        assert receipt["status"] == "0x1"
        out = call(dev.node_url, "eth_call", {"to": factory, "data": "0x" + (
            bytes.fromhex("8cb84e18") + encode(["address", "uint256"], [owner.address, salt])).hex()}, "latest")
        accounts.append(decode(["address"], bytes.fromhex(out[2:]))[0].lower())
    a, b = accounts
    chain_id = int(call(dev.node_url, "eth_chainId"), 16)

    def valid(account: str, digest: bytes, signature: bytes) -> bool:
        out = call(dev.node_url, "eth_call", {"to": account, "data": "0x" + (
            erc1271.ERC1271_MAGIC + encode(["bytes32", "bytes"], [digest, signature])).hex()}, "latest")
        return bytes.fromhex(out[2:])[:4] == erc1271.ERC1271_MAGIC

    message = "Sign in to example.org, nonce 7"
    message_hash = keccak(erc1271.prefixed_message(message))
    sig = erc1271.sign_message(owner_key, a, chain_id, message)
    assert valid(a, message_hash, sig)
    assert not valid(b, message_hash, sig)
    assert valid(b, message_hash, erc1271.sign_message(owner_key, b, chain_id, message))

    permit = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            "PermitDetails": [{"name": "token", "type": "address"}, {"name": "amount", "type": "uint160"},
                              {"name": "expiration", "type": "uint48"}, {"name": "nonce", "type": "uint48"}],
            "PermitSingle": [{"name": "details", "type": "PermitDetails"}, {"name": "spender", "type": "address"},
                             {"name": "sigDeadline", "type": "uint256"}],
        },
        "primaryType": "PermitSingle",
        "domain": {"name": "Permit2", "chainId": chain_id, "verifyingContract": "0x000000000022D473030F116dDEE9F6B43aC78BA3"},
        "message": {"details": {"token": dev.token, "amount": 10**18, "expiration": 2_000_000_000, "nonce": 0},
                    "spender": owner.address, "sigDeadline": 2_000_000_000},
    }
    signable = encode_typed_data(full_message=permit)
    permit_hash = keccak(b"\x19\x01" + signable.header + signable.body)
    typed_sig = erc1271.sign_typed_data(owner_key, a, chain_id, permit)
    assert valid(a, permit_hash, typed_sig)
    assert not valid(b, permit_hash, typed_sig)

    session_key = "0x" + bytes(Account.create().key).hex()
    assert not valid(a, message_hash, erc1271.sign_message(session_key, a, chain_id, message))
    assert not valid(a, permit_hash, erc1271.sign_typed_data(session_key, a, chain_id, permit))
    assert not valid(a, message_hash, sign_digest(owner_key, message_hash))  # a bare signature of the hash

    if NODE is None:
        return
    script = (f"import('{(REPO / 'sdk/ts/dist/index.js').as_posix()}').then(async m => {{"
              f"const {{ privateKeyToAccount }} = await import('viem/accounts');"
              f"const signer = privateKeyToAccount(process.argv[1]);"
              f"process.stdout.write(await m.signErc1271Message({{ signer, account: process.argv[2], chainId: {chain_id},"
              f" message: process.argv[3] }}));}})")
    done = subprocess.run([NODE, "--input-type=module", "-e", script, owner_key, a, message], capture_output=True, text=True,
                          timeout=60, cwd=REPO / "sdk/ts")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "0x" + sig.hex()
