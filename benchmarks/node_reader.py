"""CPU per node call of the simulation workers' JSON-RPC client: pjrpc over requests (the
old transport) vs pjrpc over urllib3 + orjson (NodeReader's transport now).

    .venv/bin/python benchmarks/node_reader.py [--calls 2000]

Starts its own anvil (nothing deployed: the calls read empty state, which is what the
transport cost is about). CPU is this process's (time.process_time), so anvil's own work
is not counted; wall time per call is printed beside it. Variants run interleaved in
rounds so that machine noise hits them alike.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import requests
from pjrpc.client.backend.requests import Client as RequestsClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bundler.devchain import start_anvil  # noqa: E402
from bundler.chain.sync_reader import NodeReader, Urllib3Client  # noqa: E402

ADDRESS = "0x" + "11" * 20


def single(client) -> None:
    client.call("eth_getStorageAt", ADDRESS, "0x0", "latest")


def batch(client) -> None:
    """The shape of a new sender's prefetch: 3 accounts (3 calls each) and 11 slots."""
    with client.batch() as b:
        for i in range(3):
            a = "0x" + f"{i + 1:02x}" * 20
            b.call("eth_getBalance", a, "latest")
            b.call("eth_getTransactionCount", a, "latest")
            b.call("eth_getCode", a, "latest")
        for s in range(11):
            b.call("eth_getStorageAt", ADDRESS, hex(s), "latest")
    assert len(list(b.get_results())) == 20


def measure(client, fn, n: int) -> tuple[float, float]:
    gc.collect()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn(client)
    return (time.process_time() - c0) / n, (time.perf_counter() - w0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per variant and shape (split into 4 rounds)")
    args = ap.parse_args()
    node = start_anvil()
    try:
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=2))
        clients = {
            "pjrpc + requests + json": RequestsClient(node.url, session=session),
            "pjrpc + urllib3 + orjson": Urllib3Client(node.url),
        }
        reader = NodeReader(node.url)
        rounds, per_round = 4, max(1, args.calls // 4)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for name, client in clients.items():  # warm: connections open, code paths imported
            single(client)
            batch(client)
        for _ in range(rounds):
            for shape, fn in (("single call", single), ("batch of 20", batch)):
                for name, client in clients.items():
                    results.setdefault((shape, name), []).append(measure(client, fn, per_round))
        # NodeReader end to end (hex decoding included): a new sender's prefetch batch
        accounts = ["0x" + f"{i + 1:02x}" * 20 for i in range(3)]
        slots = [(ADDRESS, s) for s in range(11)]
        reader_fn = lambda r: r.get_accounts_and_storage(accounts, slots, "latest")  # noqa: E731
        reader_fn(reader)
        reader_cost = measure(reader, reader_fn, per_round * 2)

        print(f"anvil at {node.url}; {rounds} rounds x {per_round} calls, interleaved")
        print(f"{'shape':<12} | {'transport':<26} | CPU/call  | wall/call")
        for (shape, name), rows in results.items():
            cpu = min(r[0] for r in rows)  # best round: the least disturbed by the machine
            wall = min(r[1] for r in rows)
            print(f"{shape:<12} | {name:<26} | {cpu * 1000:6.3f} ms | {wall * 1000:6.3f} ms")
        print(f"NodeReader.get_accounts_and_storage (3 accounts + 11 slots): "
              f"{reader_cost[0] * 1000:.3f} ms CPU, {reader_cost[1] * 1000:.3f} ms wall")
        session.close()
        reader.close()
    finally:
        node.stop()


if __name__ == "__main__":
    main()
