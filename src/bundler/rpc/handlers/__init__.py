"""JSON-RPC handlers, one module per namespace. Each registry function takes a typed services
value (a frozen dataclass of narrow Protocols), never the whole Bundler: a handler parses its
params, calls a service, and encodes the result; errors leave as exceptions that
rpc/errors.py maps to JSON-RPC errors.

    eth        eth_* and web3_clientVersion       EthServices (pool admission, estimator, lookup)
    debug      debug_bundler_*                     DebugServices (the pool's debug operations, bundling)
    session    session_*                           SessionServices (sessions.service)
    paymaster  pm_* (ERC-7677)                     PaymasterServices (paymaster.service)
    fees       pimlico_*/rundler_* gas prices      FeeServices (head, fee oracle)
"""
