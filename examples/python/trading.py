"""Flow 5 (backend side): one-click trading. Transfers to the DEX of 60 and 30 tokens go through;
a 20-token trade would cross the 100-token limit and is refused with what is left (10). Gas is
sponsored (--paymaster): the account holds no ETH.

    python examples/python/trading.py keygen --bundler URL --key-file K
    python examples/python/trading.py run --bundler URL --token T --to DEX --key-file K --session S --paymaster URL
"""
from __future__ import annotations

from common import balance_of, emit, eth_balance, keygen, load_key, parse_args, transfer
from session_sdk import Call, RpcError, SessionAccount, deserialize_session

TOKEN = 10**18
args = parse_args()
if args.command == "keygen":
    emit("key", address=keygen(args.key_file))
else:
    account = SessionAccount.from_grant(deserialize_session(args.session), load_key(args.key_file), args.bundler, args.node,
                                        paymaster=args.paymaster)
    for amount in (60, 30):
        receipt = account.send_and_wait([Call(args.token, 0, transfer(args.to, amount * TOKEN))])
        emit("trade", amount=amount, success=receipt["success"], paymaster=receipt.get("paymaster"))
    try:
        account.send([Call(args.token, 0, transfer(args.to, 20 * TOKEN))])
        emit("crossing-trade", refused=False)
    except RpcError as e:
        r = e.refusal
        emit("crossing-trade", refused=True, rule=r.rule if r else None, remaining=r.remaining if r else None,
             used=r.used if r else None, limit=r.limit if r else None, message=e.message)
    emit("dex", tokens=balance_of(account.node, args.token, args.to), accountWei=eth_balance(account.node, account.address))
