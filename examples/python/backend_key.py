"""Flow 1 (backend side): the backend holds its own key; the app handed it a session string.
Its first op deploys the account and enables the session (mode 0x02), it mints tokens, and a call
that sends ETH is refused by the bundler with the rule and the numbers. Gas is sponsored through
the ERC-7677 paymaster service: the account never holds ETH.

    python examples/python/backend_key.py keygen --bundler URL --key-file backend.key
    python examples/python/backend_key.py run --bundler URL --token TOKEN --key-file backend.key --session STRING
        --paymaster URL
"""
from __future__ import annotations

from common import DEPOSIT, balance_of, deposit_of, emit, eth_balance, keygen, load_key, mint, parse_args
from session_sdk import Call, RpcError, SessionAccount, deserialize_session

args = parse_args()
if args.command == "keygen":
    emit("key", address=keygen(args.key_file))
else:
    account = SessionAccount.from_grant(deserialize_session(args.session), load_key(args.key_file), args.bundler, args.node,
                                        paymaster=args.paymaster)
    was_deployed = account.deployed()
    receipt = account.send_and_wait([Call(args.token, 0, mint(account.address, 1000))])
    emit("minted", success=receipt["success"], deployedBefore=was_deployed, deployedNow=account.deployed(),
         balance=balance_of(account.node, args.token, account.address), paymaster=receipt.get("paymaster"),
         accountWei=eth_balance(account.node, account.address), depositWei=deposit_of(account))
    try:
        account.send([Call(args.token, 10**15, DEPOSIT)])  # 0.001 ETH: the grant allows none
        emit("value-call", refused=False)
    except RpcError as e:
        r = e.refusal
        emit("value-call", refused=True, code=e.code, rule=r.rule if r else None,
             limit=r.limit if r else None, requested=r.requested if r else None, message=e.message)
