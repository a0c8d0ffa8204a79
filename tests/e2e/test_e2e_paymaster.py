"""End-to-end sponsorship with real clients from npm, unchanged: viem createBundlerClient +
createPaymasterClient (on the paymaster's own path) and permissionless createSmartAccountClient
with its `paymaster:` option (on the bundler URL), each sending ops from an unfunded
counterfactual SimpleAccount on EntryPoint v0.7 and v0.8, under a named policy; on v0.9 both
with viem's Simple7702Account (an EOA holding no ether, delegated by its first, sponsored op)."""
from __future__ import annotations

import os
import textwrap

import pytest

from bundler.entrypoint import V07, V08, V09
from bundler.paymaster.signer import PaymasterSigner

from helpers.bundlers import running_bundler
from helpers.paymaster import sponsor_paymasters
from test_e2e_clients import NODE, checks, report, run_clients

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on PATH")

SIGNER_KEY = "0x" + "e7" * 32


@pytest.fixture(scope="module")
async def sponsoring_bundler(anvil, tmp_path_factory):
    signer = PaymasterSigner(SIGNER_KEY)
    contracts = [f"{v}={a}" for v, a in sponsor_paymasters(anvil.url, signer.address).items()]
    policies = tmp_path_factory.mktemp("e2e-pm") / "policies.toml"
    policies.write_text(textwrap.dedent("""
        [policies.e2e]
        account_budget = "0.5 ether"
        max_cost_per_op = "0.1 ether"
    """))
    async with running_bundler(anvil, bundle_mode="auto", paymaster_signer_key=SIGNER_KEY,
                               paymaster_contracts=contracts, paymaster_policies_file=str(policies)) as (b, client):
        yield b, client


async def _run(client: str, anvil, bundler) -> list[dict]:
    os.environ["PAYMASTER_POLICY"] = "e2e"
    try:
        code, out, err = await run_clients(client, bundler.url, anvil.url)
    finally:
        del os.environ["PAYMASTER_POLICY"]
    assert code == 0, report(code, out, err)
    done = [c for c in checks(out) if c.get("check") == f"{client}: done"]
    assert done and done[0]["ok"], report(code, out, err)
    return checks(out)


@pytest.mark.parametrize("client", ["viem-paymaster-v07", "viem-paymaster-v08", "viem-paymaster-v09",
                                    "permissionless-paymaster-v07", "permissionless-paymaster-v08",
                                    "permissionless-paymaster-v09"])
async def test_sponsored_ops_from_an_unfunded_account(anvil, sponsoring_bundler, client):
    bundler, _rpc = sponsoring_bundler
    out = await _run(client, anvil, bundler)
    ep = {"v07": V07, "v08": V08, "v09": V09}[client[-3:]]
    sponsored = [c for c in out if c["check"].endswith(": sponsored")]
    assert len(sponsored) == 2
    assert {c["paymaster"].lower() for c in sponsored} == {bundler.paymaster.paymaster_for(ep)}
