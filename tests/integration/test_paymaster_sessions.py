"""A session key's op sponsored under a policy that names the session: the SessionAccount's
session (SessionSpec v2) allows the paymaster, the policy allows that session key and call
target, and the account holds no ETH. The sponsorship binds the session key: the same op signed
by the owner is refused, and another session key is not sponsored under that policy."""
from __future__ import annotations

import textwrap

import pytest
from eth_abi import encode

from bundler.devchain.anvil import rpc as node_rpc
from bundler.entrypoint import V07, V08
from bundler.paymaster.signer import PaymasterSigner
from session_sdk.types import CallPolicy, GasPolicy, SessionSpec
from session_sdk.signatures import encode_session_signature
from session_sdk.calldata import encode_execute, encode_grant_session
from bundler.userop import format_user_operation, decode_user_operation

from conftest import RpcError
from helpers.accounts import mine
from helpers.inproc import running_bundler
from helpers.paymaster import sponsor_paymasters
from helpers.sessions import (
    SessionAccountHandle, deploy_session_contracts, erc20_balance, handle_ops, new_key, selector,
)

SIGNER_KEY = "0x" + "f5" * 32
SEL_MINT = selector("mint(address,uint256)")
STUB_SESSION_SIGNATURE = b"\xff" * 32 + b"\x7f" * 32 + b"\x1c"


@pytest.fixture(scope="module")
def setup(chain, tmp_path_factory):
    sessions = deploy_session_contracts(chain.url)
    signer = PaymasterSigner(SIGNER_KEY)
    paymasters = sponsor_paymasters(chain.url, signer.address, [V07, V08])
    session_key, session_address = new_key()
    policies = tmp_path_factory.mktemp("pm-sessions") / "policies.toml"
    policies.write_text(textwrap.dedent(f"""
        [policies.backend]
        session_keys = ["{session_address}"]
        targets = ["{sessions.token}"]
        account_budget = "0.1 ether"
    """))
    mine(chain.url)
    return sessions, paymasters, (session_key, session_address), str(policies)


@pytest.fixture(scope="module")
async def pm_bundler(chain, setup):
    _sessions, paymasters, _key, policies = setup
    async with running_bundler(
        chain, paymaster_signer_key=SIGNER_KEY, paymaster_policies_file=policies,
        paymaster_contracts=[f"{v}={a}" for v, a in paymasters.items()],
    ) as (bundler, client):
        yield bundler, client


def granted_account(chain, ep, sessions, paymaster: str, session_address: str) -> SessionAccountHandle:
    """A deployed SessionAccount whose session may mint the test token, gas paid by `paymaster`
    only; left with no ETH."""
    acct = SessionAccountHandle.create(chain.url, chain.chain_id, ep, sessions, fund=10**18)
    spec = SessionSpec(signer=session_address, call_policies=(CallPolicy(target=sessions.token, selector=SEL_MINT),),
                       gas=GasPolicy(max_cost_per_op=10**17, paymasters=(paymaster,)))
    [res] = handle_ops(chain.url, ep, [acct.sign_owner(acct.build(encode_grant_session(spec)))])
    assert res.success
    node_rpc(chain.url, "anvil_setBalance", [acct.address, "0x0"])
    mine(chain.url)
    return acct


@pytest.mark.parametrize("ep", [V07, V08], ids=["v07", "v08"])
async def test_session_op_sponsored_under_a_policy_naming_the_session(chain, setup, pm_bundler, ep):
    sessions, paymasters, (session_key, session_address), _ = setup
    _bundler, client = pm_bundler
    acct = granted_account(chain, ep, sessions, paymasters[ep.version], session_address)
    mint = encode_execute(sessions.token, 0, SEL_MINT + encode(["address", "uint256"], [acct.address, 7]))
    # as a session SDK sends it: the stub signature already names the session key (mode 0x01)
    op = acct.build(mint).with_changes(
        signature=encode_session_signature(session_address, 0, STUB_SESSION_SIGNATURE))
    rpc_op = format_user_operation(op)
    ctx = {"policyId": "backend"}
    stub = await client.call("pm_getPaymasterStubData", rpc_op, ep.address, hex(chain.chain_id), ctx)
    rpc_op.update({k: v for k, v in stub.items() if k.startswith("paymaster")})
    rpc_op.update(await client.call("pm_getPaymasterData", rpc_op, ep.address, hex(chain.chain_id), ctx))
    sponsored = decode_user_operation(rpc_op)
    assert sponsored.paymaster == paymasters[ep.version]

    # the owner signing the very same op cannot use the session's sponsorship
    owner_signed = acct.sign_owner(sponsored)
    with pytest.raises(RpcError) as err:
        await client.call("eth_sendUserOperation", format_user_operation(owner_signed), ep.address)
    assert err.value.code == -32507 and "paymaster signature" in err.value.message, err.value

    op_hash = await client.call("eth_sendUserOperation",
                                format_user_operation(acct.sign_session(sponsored, session_key)), ep.address)
    await client.call("debug_bundler_sendBundleNow")
    receipt = await client.call("eth_getUserOperationReceipt", op_hash)
    assert receipt["success"] and receipt["paymaster"].lower() == paymasters[ep.version]
    assert erc20_balance(chain.url, sessions.token, acct.address) == 7
    assert node_rpc(chain.url, "eth_getBalance", [acct.address, "latest"]) == "0x0"


async def test_other_session_key_or_target_is_not_sponsored(chain, setup, pm_bundler):
    sessions, _paymasters, (_key, session_address), _ = setup
    _bundler, client = pm_bundler
    other_key, other_address = new_key()
    acct = SessionAccountHandle.create(chain.url, chain.chain_id, V07, sessions, fund=0)
    mint = encode_execute(sessions.token, 0, SEL_MINT + encode(["address", "uint256"], [acct.address, 1]))
    cases = [
        (acct.build(mint), {"policyId": "backend", "sessionKey": other_address}, "sessionKeys"),
        (acct.build(mint), {"policyId": "backend"}, "sessionKeys"),  # no session key at all
        (acct.build(encode_execute("0x" + "12" * 20, 0, b"")), {"policyId": "backend", "sessionKey": session_address},
         "targets"),
    ]
    for op, ctx, rule in cases:
        with pytest.raises(RpcError) as err:
            await client.call("pm_getPaymasterData", format_user_operation(op), V07.address, hex(chain.chain_id), ctx)
        assert err.value.code == -32501 and err.value.data["rule"] == rule, (ctx, err.value.data)
