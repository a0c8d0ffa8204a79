"""The ERC-7677 service over JSON-RPC against a real chain: pm_getPaymasterStubData /
pm_getPaymasterData under policies from a settings file, sponsored ops admitted, bundled and
mined, every refusal rule, budget exhaustion, and settlement (mined: actual cost; dropped:
budget given back)."""
from __future__ import annotations

import os
import textwrap

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bundler.entrypoint import V07, V08, V09
from bundler.paymaster.signer import PaymasterSigner
from bundler.userop import format_user_operation, decode_user_operation

from conftest import RpcError
from helpers.accounts import entry_point_deposit
from helpers.inproc import eventually, running_bundler
from helpers.paymaster import sponsor, sponsor_paymasters, unsigned

SIGNER_KEY = "0x" + "c3" * 32
SIGNER = PaymasterSigner(SIGNER_KEY)
ALLOWED_TARGET = "0x" + "a7" * 20


@pytest.fixture(scope="module")
def paymasters(chain):
    return sponsor_paymasters(chain.url, SIGNER.address)


@pytest.fixture(scope="module")
def policies_file(tmp_path_factory, chain):
    path = tmp_path_factory.mktemp("pm") / "policies.toml"
    path.write_text(textwrap.dedent(f"""
        [policies.open]
        global_budget = "10 ether"

        [policies.targets-only]
        targets = ["{ALLOWED_TARGET}"]

        [policies.no-deploy]
        factories = []

        [policies.some-factory]
        factories = ["0x{'11' * 20}"]

        [policies.one-sender]
        senders = ["0x{'22' * 20}"]

        [policies.sessions]
        session_keys = ["0x{'33' * 20}"]

        [policies.cheap]
        max_cost_per_op = "1000 gwei"

        [policies.expired]
        valid_until = 1000

        [policies.v08-only]
        entry_points = ["0.8"]

        [policies.small]
        account_budget = "0.002 ether"
        period = "day"
    """))
    return str(path)


@pytest.fixture(scope="module")
async def pm_bundler(chain, paymasters, policies_file):
    async with running_bundler(
        chain, paymaster_signer_key=SIGNER_KEY, paymaster_policies_file=policies_file,
        paymaster_contracts=[f"{v}={a}" for v, a in paymasters.items()], paymaster_default_policy="open",
        paymaster_settle_interval_s=0.2,
    ) as (bundler, client):
        yield bundler, client


@pytest.mark.parametrize("ep", [V07, V08, V09], ids=["v07", "v08", "v09"])
async def test_sponsored_op_from_unfunded_counterfactual_account(chain, pm_bundler, paymasters, ep):
    bundler, client = pm_bundler
    acct = chain.account(ep, deployed=False, funded=0)
    status_before = await client.call("pm_getSponsorshipStatus", "open")
    deposit_before = entry_point_deposit(chain.url, ep, paymasters[ep.version])
    op = await sponsor(client, chain, acct)
    assert op["paymaster"].lower() == paymasters[ep.version]
    op_hash = await client.call("eth_sendUserOperation", op, ep.address)
    reserved = await client.call("pm_getSponsorshipStatus", "open")
    assert int(reserved["global"]["spent"]) == int(status_before["global"]["spent"]) + decode_user_operation(op).max_cost()
    await client.call("debug_bundler_sendBundleNow")
    receipt = await client.call("eth_getUserOperationReceipt", op_hash)
    assert receipt["success"] and acct.is_deployed()
    assert receipt["paymaster"].lower() == paymasters[ep.version]
    cost = int(receipt["actualGasCost"], 16)
    assert entry_point_deposit(chain.url, ep, paymasters[ep.version]) == deposit_before - cost

    async def settled():
        status = await client.call("pm_getSponsorshipStatus", "open")
        return int(status["global"]["spent"]) == int(status_before["global"]["spent"]) + cost
    await eventually(settled, what="the sponsorship settled at the op's actual cost")


@pytest.mark.parametrize("policy, changes, rule", [
    ("targets-only", {}, "targets"),
    ("no-deploy", {"deployed": False}, "factories"),
    ("some-factory", {"deployed": False}, "factories"),
    ("one-sender", {}, "senders"),
    ("sessions", {}, "sessionKeys"),
    ("expired", {}, "validity"),
    ("v08-only", {}, "entryPoint"),
])
async def test_policy_refusals_name_the_rule(chain, pm_bundler, policy, changes, rule):
    _bundler, client = pm_bundler
    acct = chain.account(V07, deployed=changes.get("deployed", True), funded=0)
    for method in ("pm_getPaymasterStubData", "pm_getPaymasterData"):
        with pytest.raises(RpcError) as err:
            await client.call(method, unsigned(acct), V07.address, hex(chain.chain_id), {"policyId": policy})
        assert err.value.code == -32501, err.value
        assert err.value.data["policyId"] == policy and err.value.data["rule"] == rule, err.value.data
        assert policy in err.value.message


async def test_targets_policy_sponsors_its_targets(chain, pm_bundler):
    _bundler, client = pm_bundler
    acct = chain.account(V07, deployed=True, funded=0)
    op = unsigned(acct, ALLOWED_TARGET)
    data = await client.call("pm_getPaymasterData", op, V07.address, hex(chain.chain_id), {"policyId": "targets-only"})
    assert data["paymasterData"].startswith("0x")


async def test_max_cost_per_op_is_refused_with_the_figures(chain, pm_bundler):
    _bundler, client = pm_bundler
    acct = chain.account(V07, deployed=True, funded=0)
    with pytest.raises(RpcError) as err:
        await client.call("pm_getPaymasterData", unsigned(acct), V07.address, hex(chain.chain_id),
                          {"policyId": "cheap"})
    assert err.value.code == -32501 and err.value.data["rule"] == "maxCostPerOp"
    assert int(err.value.data["limit"]) == 1000 * 10**9 and int(err.value.data["requested"]) > 1000 * 10**9


async def test_bad_requests_are_params_errors(chain, pm_bundler):
    _bundler, client = pm_bundler
    acct = chain.account(V07, deployed=True, funded=0)
    cases = [
        (unsigned(acct), V07.address, hex(chain.chain_id + 1), None),   # other chain
        (unsigned(acct), "0x" + "12" * 20, hex(chain.chain_id), None),  # unknown EntryPoint
        (unsigned(acct), V07.address, hex(chain.chain_id), {"policyId": "nope"}),
        (unsigned(acct), V07.address, hex(chain.chain_id), "not an object"),
        ({"sender": "0x12"}, V07.address, hex(chain.chain_id), None),
    ]
    for params in cases:
        with pytest.raises(RpcError) as err:
            await client.call("pm_getPaymasterData", *params)
        assert err.value.code == -32602, (params, err.value)


async def test_account_budget_exhausted_then_given_back_when_dropped(chain, pm_bundler):
    """'small' allows 0.002 ether per account and day: one op (max cost ~0.0016 ether) fits, a
    second is refused with what is left; once the first is dropped its budget is back."""
    bundler, client = pm_bundler
    released_before = (await _sponsorship_counts(bundler)).get(("small", "released", ""), 0)
    acct = chain.account(V07, deployed=True, funded=0)
    ctx = {"policyId": "small"}
    op = await sponsor(client, chain, acct, ctx)
    await client.call("eth_sendUserOperation", op, V07.address)
    max_cost = decode_user_operation(op).max_cost()
    with pytest.raises(RpcError) as err:
        await client.call("pm_getPaymasterData", unsigned(acct, nonce=1), V07.address, hex(chain.chain_id), ctx)
    assert err.value.code == -32501 and err.value.data["rule"] == "accountBudget", err.value.data
    assert int(err.value.data["remaining"]) == 2 * 10**15 - max_cost
    assert err.value.data["sender"] == acct.address
    # another account has its own budget
    other = chain.account(V07, deployed=True, funded=0)
    await client.call("pm_getPaymasterData", unsigned(other), V07.address, hex(chain.chain_id), ctx)

    await client.call("debug_bundler_clearMempool")  # the op is recorded dropped

    async def given_back():
        status = await client.call("pm_getSponsorshipStatus", "small", acct.address)
        return int(status["account"]["spent"]) == 0
    await eventually(given_back, what="the dropped op's budget to be given back")
    assert (await _sponsorship_counts(bundler)).get(("small", "released", ""), 0) == released_before + 1
    await sponsor(client, chain, acct, ctx, nonce=0)


async def test_own_path_serves_only_pm_methods(chain, pm_bundler):
    bundler, _client = pm_bundler
    acct = chain.account(V08, deployed=True, funded=0)
    async with aiohttp.ClientSession() as session:
        async def call(method, *params):
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
            async with session.post(bundler.url + "/paymaster", json=body) as resp:
                return await resp.json()
        answer = await call("pm_getPaymasterStubData", unsigned(acct), V08.address, hex(chain.chain_id), None)
        assert answer["result"]["paymaster"]
        assert (await call("eth_chainId"))["error"]["code"] == -32601


async def test_v09_separate_signature_account_signs_first(chain, pm_bundler, paymasters):
    """EntryPoint v0.9, context separateSignature: the stub's paymasterData (the terms) is final,
    the account signs over it with the stub's placeholder paymasterSignature (outside the
    userOpHash), then pm_getPaymasterData signs those same terms; the op is mined as signed."""
    _bundler, client = pm_bundler
    acct = chain.account(V09, deployed=False, funded=0)
    ctx = {"policyId": "open", "separateSignature": True}
    op = unsigned(acct)
    stub = await client.call("pm_getPaymasterStubData", op, V09.address, hex(chain.chain_id), ctx)
    assert stub["paymaster"].lower() == paymasters["0.9"] and len(stub["paymasterSignature"]) == 2 + 2 * 65
    op.update({k: stub[k] for k in ("paymaster", "paymasterData", "paymasterSignature",
                                     "paymasterVerificationGasLimit", "paymasterPostOpGasLimit")})
    signed_by_account = format_user_operation(acct.sign(decode_user_operation(op), chain.chain_id))
    data = await client.call("pm_getPaymasterData", signed_by_account, V09.address, hex(chain.chain_id), ctx)
    assert data["paymasterData"] == stub["paymasterData"]  # the terms the account signed over
    assert data["paymasterSignature"] != stub["paymasterSignature"]
    final = dict(signed_by_account, paymasterSignature=data["paymasterSignature"])
    assert final["signature"] == signed_by_account["signature"]
    op_hash = await client.call("eth_sendUserOperation", final, V09.address)
    assert op_hash == "0x" + V09.user_op_hash(decode_user_operation(signed_by_account), chain.chain_id).hex()
    await client.call("debug_bundler_sendBundleNow")
    receipt = await client.call("eth_getUserOperationReceipt", op_hash)
    assert receipt["success"] and receipt["paymaster"].lower() == paymasters["0.9"] and acct.is_deployed()


async def test_separate_signature_needs_v09(chain, pm_bundler):
    _bundler, client = pm_bundler
    acct = chain.account(V08, deployed=True, funded=0)
    for ctx in ({"policyId": "open", "separateSignature": True}, {"policyId": "open", "separateSignature": "yes"}):
        with pytest.raises(RpcError) as err:
            await client.call("pm_getPaymasterStubData", unsigned(acct), V08.address, hex(chain.chain_id), ctx)
        assert err.value.code == -32602 and "separateSignature" in err.value.message


async def _sponsorship_counts(bundler) -> dict[tuple[str, str, str], float]:
    async with aiohttp.ClientSession() as session, session.get(bundler.url + "/metrics") as resp:
        text = await resp.text()
    return {(s.labels["policy"], s.labels["outcome"], s.labels["rule"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "bundler_paymaster_sponsorships_total"}


async def test_metrics_count_sponsorships_by_policy_and_outcome(chain, pm_bundler):
    """/metrics: bundler_paymaster_sponsorships_total{policy, outcome, rule} counts a sponsored op,
    its settlement once mined, and a refusal by rule."""
    bundler, client = pm_bundler
    before = await _sponsorship_counts(bundler)

    def delta(counts, key):
        return counts.get(key, 0) - before.get(key, 0)

    acct = chain.account(V07, deployed=True, funded=0)
    op = await sponsor(client, chain, acct, {"policyId": "open"})
    op_hash = await client.call("eth_sendUserOperation", op, V07.address)
    with pytest.raises(RpcError):
        await client.call("pm_getPaymasterData", unsigned(acct, nonce=1), V07.address, hex(chain.chain_id),
                          {"policyId": "targets-only"})
    await client.call("debug_bundler_sendBundleNow")
    assert (await client.call("eth_getUserOperationReceipt", op_hash))["success"]

    async def settled():
        return delta(await _sponsorship_counts(bundler), ("open", "settled", "")) == 1
    await eventually(settled, what="the settlement to be counted")
    after = await _sponsorship_counts(bundler)
    assert delta(after, ("open", "sponsored", "")) == 1
    assert delta(after, ("targets-only", "refused", "targets")) == 1
    assert delta(after, ("targets-only", "sponsored", "")) == 0
