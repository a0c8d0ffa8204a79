"""Flow 2 (backend side): two backends act for an EIP-7702 EOA.
  limited  ERC-20 transfers of at most 50 tokens each (a 60-token transfer is refused with the
           argument's rule) and ETH to one recipient;
  full     anything for 10 minutes (a batch: a token transfer and 0.05 ETH).
Every op is sponsored through the ERC-7677 paymaster service (--paymaster): the EOA pays no gas.

    python examples/python/eip7702.py keygen --bundler URL --key-file K
    python examples/python/eip7702.py run  --bundler URL --token T --to R --key-file K --session S --paymaster URL  (limited)
    python examples/python/eip7702.py full --bundler URL --token T --to R --key-file K --session S --paymaster URL
"""
from __future__ import annotations

from common import balance_of, emit, eth_balance, keygen, load_key, parse_args, transfer
from session_sdk import Call, RpcError, SessionAccount, deserialize_session

args = parse_args("full")
if args.command == "keygen":
    emit("key", address=keygen(args.key_file))
else:
    account = SessionAccount.from_grant(deserialize_session(args.session), load_key(args.key_file), args.bundler, args.node,
                                        paymaster=args.paymaster)
    if args.command == "run":
        ok = account.send_and_wait([Call(args.token, 0, transfer(args.to, 50))])
        emit("transfer-50", success=ok["success"], recipientTokens=balance_of(account.node, args.token, args.to))
        try:
            account.send([Call(args.token, 0, transfer(args.to, 60))])
            emit("transfer-60", refused=False)
        except RpcError as e:
            emit("transfer-60", refused=True, rule=e.refusal.rule if e.refusal else None, message=e.message)
        eth = account.send_and_wait([Call(args.to, 10**16, b"")])
        emit("eth-0.01", success=eth["success"], paymaster=eth.get("paymaster"), accountWei=eth_balance(account.node, account.address))
    else:
        batch = account.send_and_wait([Call(args.token, 0, transfer(args.to, 100)), Call(args.to, 5 * 10**16, b"")])
        emit("full-batch", success=batch["success"], recipientTokens=balance_of(account.node, args.token, args.to),
             paymaster=batch.get("paymaster"), accountWei=eth_balance(account.node, account.address))
