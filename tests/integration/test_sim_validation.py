"""simulateValidation in py-evm against a private anvil: real SimpleAccounts, v0.7, v0.8 and v0.9."""
from __future__ import annotations

import time

import pytest
from eth_abi import encode

from bundler.entrypoint import V07, V08, V09
from bundler.errors import NodeError, SignatureInvalid, TimeRangeInvalid, ValidationRejected
from bundler.sim import SimConfig, SimulationFailure, SimWorker, ValidationResult, validation_error
from bundler.sim import entrypoint_sim as eps
from helpers.accounts import entry_point_deposit, mine

EPS = pytest.mark.parametrize("ep", [V07, V08, V09], ids=["v07", "v08", "v09"])


def transfer_op(acct, **kw):
    return acct.sign(acct.op(acct.execute(acct.owner, 1, b""), **kw), 1337)


@EPS
def test_valid_op_passes_with_plausible_pre_op_gas(chain, worker, ep):
    acct = chain.account(ep)
    op = transfer_op(acct)
    res = worker.simulate_validation(op, ep, chain.pinned())
    assert isinstance(res, ValidationResult), res
    # preVerificationGas + EntryPoint work + SimpleAccount validation (ecrecover, prefund transfer)
    assert op.pre_verification_gas + 30_000 < res.pre_op_gas < op.pre_verification_gas + 150_000
    assert res.prefund == op.total_gas_limit() * op.max_fee_per_gas
    assert not res.account.sig_failed and res.account.valid_until == 2**48 - 1
    assert res.paymaster_context == b"" and res.aggregator is None
    assert validation_error(res, now=int(time.time())) is None


@EPS
def test_same_result_as_anvil_eth_call_with_override(chain, worker, ep):
    """Cross-check the decoded struct against the node running EntryPointSimulations itself."""
    from bundler.devchain.anvil import rpc

    acct = chain.account(ep)
    op = transfer_op(acct)
    block = chain.pinned()
    ours = worker.simulate_validation(op, ep, block)
    data = eps.SEL_SIMULATE_VALIDATION + encode([eps.PACKED_USEROP_TYPE], [eps.pack(op)])
    out = rpc(chain.url, "eth_call", [
        {"to": ep.address, "data": "0x" + data.hex(), "gas": hex(30_000_000)}, hex(block.number),
        {ep.address: {"code": "0x" + eps.simulation_code(ep).hex()}},
    ])
    theirs = eps.decode_validation_result(bytes.fromhex(out[2:]), ours.gas_used, block.number)
    assert ours == theirs


@EPS
def test_bad_signature_is_signature_invalid(chain, worker, ep):
    acct = chain.account(ep)
    op = acct.sign(acct.op(acct.execute(acct.owner, 1, b"")), 1337, key="0x" + "11" * 32)
    res = worker.simulate_validation(op, ep, chain.pinned())
    assert isinstance(res, ValidationResult) and res.account.sig_failed
    err = validation_error(res, now=int(time.time()))
    assert isinstance(err, SignatureInvalid) and err.code == -32507


@EPS
def test_malformed_signature_is_aa23_with_decoded_reason(chain, worker, ep):
    acct = chain.account(ep)
    op = acct.op(acct.execute(acct.owner, 1, b"")).with_changes(signature=b"\x01\x02\x03")
    res = worker.simulate_validation(op, ep, chain.pinned())
    assert isinstance(res, SimulationFailure)
    assert res.code == "AA23" and res.op_index == 0
    # OpenZeppelin ECDSAInvalidSignatureLength(uint256 length), selector 0xfce698f7
    assert res.message.startswith("AA23 reverted: ECDSAInvalidSignatureLength(3)")


@EPS
def test_unfunded_account_is_aa21(chain, worker, ep):
    acct = chain.account(ep, funded=0)
    res = worker.simulate_validation(transfer_op(acct), ep, chain.pinned())
    assert isinstance(res, SimulationFailure) and res.code == "AA21"
    err = eps_failure_error(res)
    assert isinstance(err, ValidationRejected) and err.code == -32500 and "AA21" in err.message


def eps_failure_error(res):
    from bundler.sim import failure_error

    return failure_error(res)


@EPS
def test_wrong_nonce_is_aa25(chain, worker, ep):
    acct = chain.account(ep)
    res = worker.simulate_validation(transfer_op(acct, nonce=5), ep, chain.pinned())
    assert isinstance(res, SimulationFailure) and res.code == "AA25"


@EPS
def test_not_deployed_without_factory_is_aa20(chain, worker, ep):
    acct = chain.account(ep, deployed=False)
    res = worker.simulate_validation(transfer_op(acct, with_init_code=False), ep, chain.pinned())
    assert isinstance(res, SimulationFailure) and res.code == "AA20"


@EPS
def test_op_with_factory_deploys_in_simulation(chain, worker, ep):
    acct = chain.account(ep, deployed=False)
    op = transfer_op(acct)
    assert op.factory == acct.factory
    block = chain.pinned()
    session = worker.session(block)
    res = eps.simulate_validation(session, op, ep, caller=worker.config.caller, gas=30_000_000)
    assert isinstance(res, ValidationResult), res
    assert res.pre_op_gas > op.pre_verification_gas + 150_000  # CREATE2 of the proxy
    sender = bytes.fromhex(acct.address[2:])
    assert session.db.get_code(sender) != b""  # deployed in the overlay ...
    assert not acct.is_deployed()  # ... not on chain
    # deploying twice: AA10 (v0.9 ignores the initCode of an account that exists)
    acct2 = chain.account(ep)
    res2 = worker.simulate_validation(transfer_op(acct2, with_init_code=True), ep, chain.pinned())
    if ep.version == "0.9":
        assert isinstance(res2, ValidationResult), res2
    else:
        assert isinstance(res2, SimulationFailure) and res2.code == "AA10"


@EPS
def test_state_overrides(chain, worker, ep):
    acct = chain.account(ep, funded=0)
    op = transfer_op(acct)
    block = chain.pinned()
    ok = worker.simulate_validation(op, ep, block, {acct.address: eps.AccountOverride(balance=10**18)})
    assert isinstance(ok, ValidationResult)
    # a deposit at the EntryPoint through stateDiff on its deposits mapping (slot 0)
    slot = eps.deposit_slot(acct.address)
    ok2 = worker.simulate_validation(
        op, ep, block, {ep.address: eps.AccountOverride(state_diff={slot: 10**18})})
    assert isinstance(ok2, ValidationResult)
    assert entry_point_deposit(chain.url, ep, acct.address) == 0


@EPS
def test_storage_layout_facts(chain, ep):
    """deposits at slot 0 and nonceSequenceNumber at slot 1 of both EntryPoints."""
    from bundler.devchain.anvil import rpc

    acct = chain.account(ep)
    from helpers.accounts import send_tx, ANVIL_ACCOUNT0, selector

    send_tx(chain.url, ANVIL_ACCOUNT0, ep.address, selector("depositTo(address)") + encode(["address"], [acct.address]),
            value=12345)
    send_tx(chain.url, acct.address, ep.address, selector("incrementNonce(uint192)") + encode(["uint192"], [7]),
            impersonate=True)
    dep = int(rpc(chain.url, "eth_getStorageAt", [ep.address, hex(eps.deposit_slot(acct.address)), "latest"]), 16)
    nonce = int(rpc(chain.url, "eth_getStorageAt", [ep.address, hex(eps.nonce_slot(acct.address, 7)), "latest"]), 16)
    assert (dep, nonce) == (12345, 1)


@EPS
def test_time_range_from_block_context(chain, worker, ep):
    """validationData is checked by the bundler; the EntryPoint simulation passes it through."""
    acct = chain.account(ep)
    res = worker.simulate_validation(transfer_op(acct), ep, chain.pinned())
    from dataclasses import replace

    from bundler.sim import ValidationData

    late = replace(res, account=ValidationData.unpack((int(time.time()) + 3600) << 208))
    assert isinstance(validation_error(late, now=int(time.time())), TimeRangeInvalid)


def test_block_cache_reuses_state_and_is_dropped_on_new_block(chain):
    w = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
    try:
        acct = chain.account(V07)
        op = transfer_op(acct)
        block = chain.pinned()
        assert isinstance(w.simulate_validation(op, V07, block), ValidationResult)
        first = w.reader.requests_sent
        assert isinstance(w.simulate_validation(op, V07, block), ValidationResult)
        assert w.reader.requests_sent == first  # everything came from the block cache
        mine(chain.url)
        assert isinstance(w.simulate_validation(op, V07, chain.pinned()), ValidationResult)
        assert w.reader.requests_sent > first  # new block: fetched again
        assert len(w._blocks) <= w.config.cached_blocks
    finally:
        w.close()


@EPS
def test_new_sender_costs_one_node_round_trip(chain, ep):
    """The first batch (prefetch_for_ops) carries everything a SimpleAccount validation reads:
    once the block's shared state is cached, a sender new to the block is one node request."""
    w = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
    try:
        ops = [transfer_op(chain.account(ep)) for _ in range(3)]
        mine(chain.url)
        block = chain.pinned()
        start = w.stats()["node_requests"]
        assert isinstance(w.simulate_validation(ops[0], ep, block), ValidationResult)
        # the first op of a block also fetches the account implementation (behind the proxy)
        assert w.stats()["node_requests"] - start <= 2
        for op in ops[1:]:
            before = w.stats()["node_requests"]
            assert isinstance(w.simulate_validation(op, ep, block), ValidationResult)
            assert w.stats()["node_requests"] - before == 1
    finally:
        w.close()


def test_next_block_fetches_last_blocks_on_demand_accounts_in_its_first_batch(chain):
    """The implementation behind the proxy was one extra request on the first block; on the next
    block it comes with the first batch (a hint from the block before), so one request."""
    w = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
    try:
        a, b = transfer_op(chain.account(V07)), transfer_op(chain.account(V07))
        mine(chain.url)
        start = w.stats()["node_requests"]
        assert isinstance(w.simulate_validation(a, V07, chain.pinned()), ValidationResult)
        assert w.stats()["node_requests"] - start == 2  # the first batch, then the implementation
        mine(chain.url)
        before = w.stats()["node_requests"]
        assert isinstance(w.simulate_validation(b, V07, chain.pinned()), ValidationResult)
        assert w.stats()["node_requests"] - before == 1
    finally:
        w.close()


def test_hinted_and_prefetched_state_changed_between_blocks_is_seen(chain):
    """Hints only choose what the next block's first batch reads: the values are that block's.
    The implementation's code (a hint) and the sender's balance change between blocks, and the
    next validations see each change."""
    from bundler.devchain.anvil import rpc

    w = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
    acct = chain.account(V07)
    impl = "0x" + rpc(chain.url, "eth_getStorageAt",
                      [acct.address, hex(eps.ERC1967_IMPLEMENTATION_SLOT), "latest"])[-40:]
    code = rpc(chain.url, "eth_getCode", [impl, "latest"])
    try:
        op = transfer_op(acct)
        assert isinstance(w.simulate_validation(op, V07, chain.pinned()), ValidationResult)
        rpc(chain.url, "anvil_setCode", [impl, "0x60006000fd"])  # every call reverts now
        mine(chain.url)
        assert isinstance(w.simulate_validation(op, V07, chain.pinned()), SimulationFailure)
        rpc(chain.url, "anvil_setCode", [impl, code])
        mine(chain.url)
        assert isinstance(w.simulate_validation(op, V07, chain.pinned()), ValidationResult)
        rpc(chain.url, "anvil_setBalance", [acct.address, "0x0"])  # cannot pay its prefund
        mine(chain.url)
        broke = w.simulate_validation(op, V07, chain.pinned())
        assert isinstance(broke, SimulationFailure) and "AA21" in str(broke)
    finally:
        rpc(chain.url, "anvil_setCode", [impl, code])
        mine(chain.url)
        w.close()


@EPS
def test_sender_storage_reads_come_from_the_prefetch(chain, ep):
    """No single-slot request for the sender's owner slot or its EntryPoint deposit info."""
    w = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
    single: list = []
    get_storage = w.reader.get_storage
    w.reader.get_storage = lambda *a: single.append(a) or get_storage(*a)
    try:
        op = transfer_op(chain.account(ep))
        mine(chain.url)
        assert isinstance(w.simulate_validation(op, ep, chain.pinned()), ValidationResult)
        assert single == []
    finally:
        w.close()


def test_node_errors_are_node_error():
    w = SimWorker("http://127.0.0.1:9", SimConfig(chain_id=1337, node_timeout=1))
    from bundler.sim import PinnedBlock

    with pytest.raises(NodeError):
        w.simulate_validation(
            eps.UserOperation(sender="0x" + "11" * 20, nonce=0, call_data=b"", call_gas_limit=0,
                              verification_gas_limit=0, pre_verification_gas=0, max_fee_per_gas=0,
                              max_priority_fee_per_gas=0, signature=b""),
            V07, PinnedBlock(number=1, timestamp=1, base_fee=1, gas_limit=30_000_000))


def test_eip7702_authorization_is_emulated(chain, worker):
    """v0.8: an EOA delegating to Simple7702Account through the op's eip7702Auth validates in
    simulation (the handleOps transaction would carry the authorization)."""
    import os

    from eth_account import Account

    from bundler.devchain.anvil import rpc
    from bundler.userop import EIP7702_FACTORY, Authorization, UserOperation
    from helpers.accounts import ANVIL_ACCOUNT0, wait_receipt

    code = V08.artifact("Simple7702Account")["bytecode"]
    tx = rpc(chain.url, "eth_sendTransaction", [{"from": ANVIL_ACCOUNT0, "data": code, "gas": hex(5_000_000)}])
    delegate = wait_receipt(chain.url, tx)["contractAddress"].lower()
    key = "0x" + os.urandom(32).hex()
    eoa = Account.from_key(key).address.lower()
    rpc(chain.url, "anvil_setBalance", [eoa, hex(10**18)])
    mine(chain.url)
    op = UserOperation(
        sender=eoa, nonce=0, call_data=b"", call_gas_limit=50_000, verification_gas_limit=200_000,
        pre_verification_gas=60_000, max_fee_per_gas=2 * 10**9, max_priority_fee_per_gas=10**9,
        signature=b"", factory=EIP7702_FACTORY,
        eip7702_auth=Authorization(chain_id=chain.chain_id, address=delegate, nonce=0, y_parity=0, r=1, s=1),
    )
    h = V08.user_op_hash(op, chain.chain_id, eip7702_delegate=delegate)
    op = op.with_changes(signature=bytes(Account.unsafe_sign_hash(h, key).signature))
    res = worker.simulate_validation(op, V08, chain.pinned())
    assert isinstance(res, ValidationResult), res
    assert not res.account.sig_failed
    # without the authorization the EOA has no code (Eip7702Support's require, no AA code)
    res2 = worker.simulate_validation(op.with_changes(eip7702_auth=None), V08, chain.pinned())
    assert isinstance(res2, SimulationFailure) and "sender has no code" in res2.message
