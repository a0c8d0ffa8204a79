"""The session relay end to end on the dev chain: calls per second through POST /relay/v1/calls
(signed request -> nonce lane -> gas estimate -> session signature -> pool admission), time until
the relay reports them mined, and the latency the relay adds over a direct eth_sendUserOperation
of an already signed session op.

    .venv/bin/python benchmarks/relay.py [--accounts 20] [--calls-per-account 10] [--concurrency 16]

Starts its own anvil (automine) and an in-process Bundler with the relay on (auto bundling, two
simulation workers, SQLite store in a temp dir). Per account: one backend grant (any target, no
ETH) activated by the owner's EIP-712 signature, whose first call carries the grant (not
measured), and one session granted by owner op with a key this script holds, for the direct
runs. The HTTP clients run in another process (spawned; its start-up is not measured):

  relay   accounts x calls-per-account mint calls, `concurrency` requests in flight
  direct  the same number of pre-signed session ops (fixed gas, consecutive nonces per sender,
          each sender's ops in order) to eth_sendUserOperation, `concurrency` in flight

Each run ends when every op is mined (relay: when GET /relay/v1/calls would say mined).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from cryptography.fernet import Fernet  # noqa: E402
from eth_abi import encode  # noqa: E402

from bundler import config as cfg  # noqa: E402
from bundler.app import Bundler  # noqa: E402
from bundler.devchain import deploy_all, free_port, start_anvil  # noqa: E402
from bundler.entrypoint import V07  # noqa: E402
from bundler.relay import auth  # noqa: E402
from bundler.relay.keystore import address_of  # noqa: E402
from session_sdk.types import CallPolicy, GasPolicy, SessionSpec  # noqa: E402
from session_sdk.signatures import sign_digest  # noqa: E402
from session_sdk.calldata import encode_execute, encode_grant_session  # noqa: E402
from bundler.store import OpStatus  # noqa: E402
from bundler.userop import format_user_operation  # noqa: E402
from helpers.sessions import SessionAccountHandle, deploy_session_contracts, handle_ops, new_key, selector  # noqa: E402

EXECUTOR_KEY = "0x" + "7e" * 32
MINT = selector("mint(address,uint256)")


def _percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


# ---------------------------------------------------------------- client process


def _client(url: str, requests: list[list[tuple[str, str, bytes, dict]]], concurrency: int, out) -> None:
    """Each inner list is sent in order (one sender's ops); the lists run side by side. Relay
    requests are signed here, just before sending, as a backend would."""
    import aiohttp

    async def main():
        sem = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        answers: list[object] = []
        errors: list[str] = []
        async with aiohttp.ClientSession() as session:
            async def chain(items):
                for method, path, body, sign in items:
                    async with sem:
                        headers = {"Content-Type": "application/json"}
                        if sign:
                            headers.update(auth.sign_request(bytes.fromhex(sign["key"]), method, path, body))
                            headers[auth.HEADER_CREDENTIAL] = sign["credential"]
                        t0 = time.perf_counter()
                        async with session.request(method, url + path, data=body, headers=headers) as r:
                            text = await r.read()
                        latencies.append(time.perf_counter() - t0)
                        answer = json.loads(text)
                        if r.status >= 300 or "error" in answer:
                            errors.append(text.decode()[:300])
                        answers.append(answer)

            t0 = time.perf_counter()
            await asyncio.gather(*(chain(items) for items in requests))
            return time.perf_counter() - t0, latencies, answers, errors

    out.put(asyncio.run(main()))


async def _in_child(requests, url: str, concurrency: int):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_client, args=(url, requests, concurrency, out))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, proc.start)
    result = await loop.run_in_executor(None, out.get)
    await loop.run_in_executor(None, proc.join)
    return result


async def _until(pred, what: str, timeout: float = 300.0) -> float:
    t0 = time.perf_counter()
    while not pred():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{what} not done after {timeout} s")
        await asyncio.sleep(0.02)
    return time.perf_counter()


# ---------------------------------------------------------------- set-up (in the bundler's process)


def _signed(bundler: Bundler, key: bytes, method: str, path: str, payload, **who):
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **auth.sign_request(key, method, path, body)}
    if "credential" in who:
        headers[auth.HEADER_CREDENTIAL] = who["credential"]
    if "owner" in who:
        headers[auth.HEADER_OWNER] = who["owner"]
    return method, path, body, headers


async def _http(session, bundler: Bundler, req) -> dict:
    method, path, body, headers = req
    async with session.request(method, bundler.url + path, data=body, headers=headers) as r:
        answer = await r.json()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {r.status} {answer}")
        return answer


async def setup(bundler: Bundler, url: str, chain_id: int, accounts: int):
    import aiohttp

    dep = deploy_session_contracts(url)
    backend_key = os.urandom(32)
    handles, direct_keys, grants = [], [], []
    async with aiohttp.ClientSession() as session:
        cred = await _http(session, bundler, _signed(bundler, backend_key, "POST", "/relay/v1/credentials",
                                                    {"address": address_of(backend_key), "name": "bench"}))
        owner_ops = []
        for _ in range(accounts):
            acct = SessionAccountHandle.create(url, chain_id, V07, dep, fund=10**19)
            acct.verification_gas, acct.call_gas = 300_000, 120_000
            key, signer = new_key()
            spec = SessionSpec(signer=signer, valid_until=2**40, call_policies=(CallPolicy(target=dep.token),),
                               gas=GasPolicy(max_cost_per_op=10**18))
            owner_ops.append(acct.sign_owner(acct.build(encode_grant_session(spec))
                                             .with_changes(call_gas_limit=1_000_000)))
            handles.append(acct)
            direct_keys.append(key)
            g = await _http(session, bundler, _signed(
                bundler, bytes.fromhex(acct.owner_key[2:]), "POST", "/relay/v1/grants",
                {"credentialId": cred["credentialId"], "account": acct.address,
                 "permissions": {"anyTarget": {"maxValuePerUse": 0}, "expiresIn": 86400}}, owner=acct.address))
            sig = sign_digest(acct.owner_key, bytes.fromhex(g["enable"]["digest"][2:]))
            await _http(session, bundler, _signed(bundler, os.urandom(32), "POST",
                                                  f"/relay/v1/grants/{g['grantId']}/activate",
                                                  {"signature": "0x" + sig.hex()}))
            grants.append(g)
        for start in range(0, len(owner_ops), 10):
            handle_ops(url, V07, owner_ops[start:start + 10])
        # each grant's first call carries the grant (enable mode): done here, not measured
        first = []
        for acct in handles:
            first.append(await _http(session, bundler, _signed(
                bundler, backend_key, "POST", "/relay/v1/calls",
                {"account": acct.address, "idempotencyKey": os.urandom(8).hex(),
                 "calls": [{"to": dep.token, "data": _mint(acct.address, 1)}]}, credential=cred["credentialId"])))
        store = bundler.relay.store
        await _until(lambda: all(store.get_call(c["callId"]).status == "mined" for c in first), "activation")
        await _until(lambda: all(store.get_grant(g["grantId"]).status == "active" for g in grants), "grants active")
    return dep, handles, direct_keys, backend_key, cred["credentialId"]


def _mint(to: str, amount: int) -> str:
    return "0x" + (MINT + encode(["address", "uint256"], [to, amount])).hex()


async def bench(args) -> None:
    anvil = start_anvil(port=free_port(), chain_id=1337)
    try:
        deploy_all(anvil.url)
        deploy_session_contracts(anvil.url)  # before the bundler starts: it discovers them at start
        from bundler.devchain import fund
        from eth_account import Account

        fund(anvil.url, Account.from_key(EXECUTOR_KEY).address, 10_000 * 10**18)
        config = cfg.Config(rpc_url=anvil.url, port=free_port(), private_key=[EXECUTOR_KEY], relay=True,
                            relay_master_key=[Fernet.generate_key().decode()], sim_workers=2, log_level="warning",
                            session_max_ops_per_sender=64, rate_limit_per_s=0, store_sync=args.store_sync)
        bundler = Bundler(config)
        await bundler.start()
        try:
            dep, handles, direct_keys, backend_key, cred_id = await setup(bundler, anvil.url, 1337, args.accounts)
            n = args.accounts * args.calls_per_account
            sign = {"key": backend_key.hex(), "credential": cred_id}

            # ---- relay
            bundler.sessions.stats.clear()
            relay_requests = []
            for i, acct in enumerate(handles):
                for j in range(args.calls_per_account):
                    body = json.dumps({"account": acct.address, "idempotencyKey": f"bench-{i}-{j}",
                                       "calls": [{"to": dep.token, "data": _mint(acct.address, 2 + j)}]}).encode()
                    relay_requests.append([("POST", "/relay/v1/calls", body, sign)])
            t_start = time.perf_counter()
            elapsed, lat, answers, errors = await _in_child(relay_requests, bundler.url, args.concurrency)
            ids = [a["callId"] for a in answers if isinstance(a, dict) and "callId" in a]
            store = bundler.relay.store
            t_mined = await _until(lambda: all(store.get_call(c).status == "mined" for c in ids), "relay calls mined")
            relay = {"accepted": len(ids), "errors": len(errors), "elapsed": elapsed, "p50": _percentile(lat, 0.5),
                     "p99": _percentile(lat, 0.99), "mined_after": t_mined - t_start}
            if errors:
                print("relay errors, e.g.", errors[0])
            relay["fast"] = bundler.sessions.stats.get("fast", 0)

            # ---- direct eth_sendUserOperation of pre-signed session ops
            direct_requests, hashes = [], []
            for acct, key in zip(handles, direct_keys):
                nonce = acct.nonce()
                chain = []
                for j in range(args.calls_per_account):
                    op = acct.build(encode_execute(dep.token, 0, bytes.fromhex(_mint(acct.address, 2 + j)[2:])),
                                    nonce=nonce + j)
                    op = acct.sign_session(op, key)
                    hashes.append("0x" + acct.op_hash(op).hex())
                    chain.append(("POST", "/", json.dumps({"jsonrpc": "2.0", "id": j, "method": "eth_sendUserOperation",
                                                           "params": [format_user_operation(op), V07.address]}).encode(),
                                  None))
                direct_requests.append(chain)
            t_start = time.perf_counter()
            d_elapsed, d_lat, _answers, d_errors = await _in_child(direct_requests, bundler.url, args.concurrency)

            def all_mined():
                return all((r := bundler.store.get(h)) is not None and r.status == OpStatus.MINED for h in hashes)

            t_mined = await _until(all_mined, "direct ops mined")
            direct = {"accepted": n - len(d_errors), "errors": len(d_errors), "elapsed": d_elapsed,
                      "p50": _percentile(d_lat, 0.5), "p99": _percentile(d_lat, 0.99), "mined_after": t_mined - t_start}
            if d_errors:
                print("direct errors, e.g.", d_errors[0])
        finally:
            await bundler.stop()
    finally:
        anvil.stop()

    print(f"session relay on the dev chain: {args.accounts} accounts x {args.calls_per_account} calls, "
          f"{args.concurrency} in flight, 2 sim workers, auto bundling, store sync {args.store_sync}")
    print(f"{'':32}{'relay POST /calls':>20}{'direct eth_sendUserOperation':>32}")
    print(f"{'accepted':32}{relay['accepted']:>20}{direct['accepted']:>32}")
    print(f"{'accepted per second':32}{relay['accepted'] / relay['elapsed']:>20.1f}"
          f"{direct['accepted'] / direct['elapsed']:>32.1f}")
    print(f"{'request latency p50 / p99 (ms)':32}{relay['p50'] * 1e3:>12.0f} / {relay['p99'] * 1e3:<5.0f}"
          f"{direct['p50'] * 1e3:>24.0f} / {direct['p99'] * 1e3:<5.0f}")
    print(f"{'all mined after (s)':32}{relay['mined_after']:>20.2f}{direct['mined_after']:>32.2f}")
    print(f"{'end to end calls per second':32}{relay['accepted'] / relay['mined_after']:>20.1f}"
          f"{direct['accepted'] / direct['mined_after']:>32.1f}")
    print(f"added latency of the relay (p50): {(relay['p50'] - direct['p50']) * 1e3:.0f} ms")
    print(f"relay ops admitted on the session fast path (no py-evm run): {relay['fast']} of {relay['accepted']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--calls-per-account", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--store-sync", choices=("full", "normal"), default="full",
                   help="SQLite synchronous mode of the bundler's store and the relay's tables")
    args = p.parse_args()
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
