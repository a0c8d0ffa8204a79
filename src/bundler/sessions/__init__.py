"""Session keys: everything the bundler does with SessionAccount sessions. The contract's encoding
(spec dataclasses, signatures, EIP-712, calldata, events) is the session SDK's (sdk/python,
session_sdk.types / signatures / eip712 / calldata / addresses / events / reverts / rules), which
backends install without the bundler, so the server and every client agree byte for byte.

    policy     the off-chain evaluator (mirror of SessionAccount's validation, differential-tested)
    recover    coincurve ECDSA recovery with the contract's rules
    ledger     pending usage of session ops in the mempool
    state      batched, per-block cached reads of session accounts through the node
    registry   known implementations / factories (dev-chain defaults)
    gas        the fast path's verification-gas bound
    service    recognition, admission hooks, fast path, revocation/expiry watcher, RPC answers
    views      JSON shapes of the session_* RPC answers
"""
