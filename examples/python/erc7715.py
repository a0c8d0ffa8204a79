"""Flow 4 (backend side): the permissionsContext of an ERC-7715-style grant (window and a usage
limit of 3 ops): three mints go through, the fourth is refused with SessionUsageLimitReached.
Gas is sponsored (--paymaster): the account holds no ETH, its first op deploys it.

    python examples/python/erc7715.py keygen --bundler URL --key-file K
    python examples/python/erc7715.py run --bundler URL --token T --key-file K --session CONTEXT --paymaster URL
"""
from __future__ import annotations

from common import balance_of, emit, eth_balance, keygen, load_key, mint, parse_args
from session_sdk import Call, RpcError, SessionAccount, deserialize_session

args = parse_args()
if args.command == "keygen":
    emit("key", address=keygen(args.key_file))
else:
    account = SessionAccount.from_grant(deserialize_session(args.session), load_key(args.key_file), args.bundler, args.node,
                                        paymaster=args.paymaster)
    for i in range(3):
        receipt = account.send_and_wait([Call(args.token, 0, mint(account.address, 10))])
        emit("mint", index=i, success=receipt["success"], paymaster=receipt.get("paymaster"))
    try:
        account.send([Call(args.token, 0, mint(account.address, 10))])
        emit("fourth", refused=False)
    except RpcError as e:
        emit("fourth", refused=True, rule=e.refusal.rule if e.refusal else None, message=e.message)
    emit("balance", tokens=balance_of(account.node, args.token, account.address),
         accountWei=eth_balance(account.node, account.address))
