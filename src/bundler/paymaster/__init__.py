"""Gas sponsorship: the ERC-7677 paymaster service of the bundler.

- `data`: the SponsorPaymaster contract's paymasterData layout and the digest its signer signs
- `signer`: the paymaster signer key (handled like the executor keys: never logged or shown)
- `policy`: sponsorship policies (who and what is sponsored, budgets per period) from the settings
- `service`: pm_getPaymasterStubData / pm_getPaymasterData: check the policy, reserve the budget
  in the store, sign; settle reservations once their ops are mined or dropped
- `deposit`: the paymaster's EntryPoint deposit, watched for /health and /metrics
- `rpc`: the JSON-RPC handler module (on the bundler's URL and on its own path)
"""
