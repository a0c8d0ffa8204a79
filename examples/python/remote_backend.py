"""Flow 3 (backend side): a remote backend with its own key calls deposit() (value-limited) for
the user; it queues two more ops (nonces n and n+1, estimated while n is pending); the owner
revokes the session and the bundler drops the queued ops, which the backend sees as the ops' fate.
Gas is sponsored (--paymaster): the account's ETH pays only the deposits.

    python examples/python/remote_backend.py keygen --bundler URL --key-file K
    python examples/python/remote_backend.py run   --bundler URL --token T --key-file K --session S
    python examples/python/remote_backend.py queue --bundler URL --token T --key-file K --session S
    python examples/python/remote_backend.py wait  --bundler URL --key-file K --session S --hashes H1 H2
"""
from __future__ import annotations

from common import DEPOSIT, emit, eth_balance, keygen, load_key, mint, parse_args
from session_sdk import Call, RpcError, SessionAccount, deserialize_session

args = parse_args("queue", "wait")
if args.command == "keygen":
    emit("key", address=keygen(args.key_file))
else:
    account = SessionAccount.from_grant(deserialize_session(args.session), load_key(args.key_file), args.bundler, args.node,
                                        paymaster=args.paymaster)
    if args.command == "run":
        receipt = account.send_and_wait([Call(args.token, 10**15, DEPOSIT)])
        emit("deposit", success=receipt["success"], paymaster=receipt.get("paymaster"),
             accountWei=eth_balance(account.node, account.address))
        try:
            account.send([Call(args.token, 2 * 10**15, DEPOSIT)])
            emit("deposit-too-much", refused=False)
        except RpcError as e:
            r = e.refusal
            emit("deposit-too-much", refused=True, rule=r.rule if r else None, limit=r.limit if r else None)
    elif args.command == "queue":
        first = account.nonce()
        hashes = [account.send([Call(args.token, 0, mint(account.address, i + 1))], nonce=first + i) for i in range(2)]
        emit("queued", hashes=hashes)
    else:
        fates = []
        for h in args.hashes:
            try:
                account.bundler.wait_for_receipt(h, timeout=60)
                fates.append({"hash": h, "dropped": False})
            except RpcError as e:
                fates.append({"hash": h, "dropped": True, "code": e.code, "reason": e.message})
        emit("fates", fates=fates)
