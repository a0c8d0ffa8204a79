"""Two bundler instances on one PostgreSQL database share the paymaster's spend counters: a
budget spent through one instance is refused at the other (which names what is left), and the
settlement of the mined op, by whichever instance gets to it first, frees the rest for both.

What is shared is the store's spend (reservations and settlements); the policies themselves
come from each instance's policies file, so the instances are given the same one."""
from __future__ import annotations

import textwrap

import pytest

from bundler.entrypoint import V07
from bundler.paymaster.signer import PaymasterSigner
from bundler.userop import decode_user_operation

from conftest import RpcError
from helpers.inproc import eventually, running_bundler
from helpers.paymaster import sponsor, sponsor_paymasters, unsigned

SIGNER_KEY = "0x" + "d4" * 32
ACCOUNT_BUDGET = 2 * 10**15  # one op's maximum cost (~1.6e15 here) fits, two do not


async def test_two_instances_share_one_budget(chain, dsn, tmp_path):  # noqa: F811
    paymaster = sponsor_paymasters(chain.url, PaymasterSigner(SIGNER_KEY).address, [V07])["0.7"]
    policies = tmp_path / "policies.toml"
    policies.write_text(textwrap.dedent(f"""
        [policies.shared]
        account_budget = {ACCOUNT_BUDGET}
        period = "day"
    """))
    settings = dict(store="postgres", postgres_dsn=dsn, paymaster_signer_key=SIGNER_KEY,
                    paymaster_contracts=[f"0.7={paymaster}"], paymaster_policies_file=str(policies),
                    paymaster_settle_interval_s=0.2, rate_limit_per_s=0)
    ctx = {"policyId": "shared"}
    async with running_bundler(chain, **settings) as (_a, at_a), running_bundler(chain, **settings) as (_b, at_b):
        acct = chain.account(V07, deployed=True, funded=0)
        op = await sponsor(at_a, chain, acct, ctx)
        max_cost = decode_user_operation(op).max_cost()
        op_hash = await at_a.call("eth_sendUserOperation", op, V07.address)

        # instance B sees A's reservation: it refuses a second op, naming what is left
        with pytest.raises(RpcError) as err:
            await at_b.call("pm_getPaymasterData", unsigned(acct, nonce=1), V07.address, hex(chain.chain_id), ctx)
        assert err.value.code == -32501 and err.value.data["rule"] == "accountBudget", err.value.data
        assert int(err.value.data["spent"]) == max_cost
        assert int(err.value.data["remaining"]) == ACCOUNT_BUDGET - max_cost
        status_b = await at_b.call("pm_getSponsorshipStatus", "shared", acct.address)
        assert int(status_b["account"]["spent"]) == max_cost

        # the op is mined (A bundles it); its settlement at the actual cost is seen by both
        await at_a.call("debug_bundler_sendBundleNow")
        receipt = await at_a.call("eth_getUserOperationReceipt", op_hash)
        assert receipt["success"]
        cost = int(receipt["actualGasCost"], 16)
        assert cost < max_cost

        async def settled_everywhere():
            spent = [int((await c.call("pm_getSponsorshipStatus", "shared", acct.address))["account"]["spent"])
                     for c in (at_a, at_b)]
            return spent == [cost, cost]
        await eventually(settled_everywhere, what="both instances to see the settled cost")

        # what is left now covers another op, sponsored at B and refused at A for a third
        op2 = await sponsor(at_b, chain, acct, ctx, nonce=1)
        await at_b.call("eth_sendUserOperation", op2, V07.address)
        with pytest.raises(RpcError) as err:
            await at_a.call("pm_getPaymasterData", unsigned(acct, nonce=2), V07.address, hex(chain.chain_id), ctx)
        assert err.value.code == -32501 and err.value.data["rule"] == "accountBudget"
        assert int(err.value.data["spent"]) == cost + decode_user_operation(op2).max_cost()
