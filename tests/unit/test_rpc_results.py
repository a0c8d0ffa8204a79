"""The wire form of results is written at the RPC edge (rpc/results.py) from typed values."""
from bundler.gas.estimate import GasLimits
from bundler.rpc.results import encode_gas_limits


def test_gas_limits_are_hex_quantities_with_paymaster_limits_only_when_sponsored():
    plain = GasLimits(pre_verification_gas=50_000, verification_gas_limit=0x1234, call_gas_limit=0)
    assert encode_gas_limits(plain) == {
        "preVerificationGas": "0xc350", "verificationGasLimit": "0x1234", "callGasLimit": "0x0"}
    sponsored = GasLimits(1, 2, 3, paymaster_verification_gas_limit=4, paymaster_post_op_gas_limit=0)
    assert encode_gas_limits(sponsored) == {
        "preVerificationGas": "0x1", "verificationGasLimit": "0x2", "callGasLimit": "0x3",
        "paymasterVerificationGasLimit": "0x4", "paymasterPostOpGasLimit": "0x0"}


def test_a_found_op_is_written_with_a_checksummed_entry_point_and_null_tx_fields_while_pending():
    from bundler.chain.lookup import FoundOp
    from bundler.rpc.results import encode_found_op
    from bundler.userop.codec import format_user_operation
    from bundler.userop.model import UserOperation

    op = UserOperation(sender="0x" + "11" * 20, nonce=1, call_data=b"\x01", call_gas_limit=2,
                       verification_gas_limit=3, pre_verification_gas=4, max_fee_per_gas=5,
                       max_priority_fee_per_gas=6, signature=b"")
    ep = "0x0000000071727de22e5e9d8baf0edac6f37da032"
    assert encode_found_op(None) is None
    assert encode_found_op(FoundOp(op, ep)) == {
        "userOperation": format_user_operation(op), "entryPoint": "0x0000000071727De22E5E9d8BAf0edAc6f37da032",
        "transactionHash": None, "blockHash": None, "blockNumber": None}
    mined = encode_found_op(FoundOp(op, ep, "0x" + "aa" * 32, "0x" + "bb" * 32, "0x10"))
    assert (mined["transactionHash"], mined["blockHash"], mined["blockNumber"]) == ("0x" + "aa" * 32, "0x" + "bb" * 32, "0x10")


def test_a_receipt_is_read_off_the_bundle_receipt_and_written_in_the_erc7769_form():
    from eth_abi import encode
    from eth_utils import to_checksum_address

    from bundler.chain.userop_logs import REVERT_REASON_TOPIC, USER_OPERATION_EVENT_TOPIC, build_receipt
    from bundler.rpc.results import encode_receipt

    ep, sender, paymaster = "0x0000000071727de22e5e9d8baf0edac6f37da032", "0x" + "ab" * 20, "0x" + "cd" * 20
    op_hash, other = "0x" + "11" * 32, "0x" + "22" * 32

    def word(address: str) -> str:
        return "0x" + "00" * 12 + address[2:]

    account_log = {"address": sender, "topics": ["0x" + "99" * 32], "data": "0x"}
    revert = {"address": ep, "topics": [REVERT_REASON_TOPIC, op_hash, word(sender)],
              "data": "0x" + encode(["uint256", "bytes"], [5, b"\x08\xc3\x79\xa0"]).hex()}
    event = {"address": ep.upper().replace("0X", "0x"), "topics": [USER_OPERATION_EVENT_TOPIC, op_hash, word(sender), word(paymaster)],
             "data": "0x" + encode(["uint256", "bool", "uint256", "uint256"], [5, False, 10**15, 21_000]).hex()}
    tx_receipt = {"transactionHash": "0x" + "aa" * 32, "status": "0x1", "logs": [account_log, revert, event]}
    assert build_receipt(other, tx_receipt) is None and encode_receipt(None) is None
    assert encode_receipt(build_receipt(op_hash, tx_receipt)) == {
        "userOpHash": op_hash, "entryPoint": "0x0000000071727De22E5E9d8BAf0edAc6f37da032",
        "sender": to_checksum_address(sender), "nonce": "0x5", "paymaster": to_checksum_address(paymaster),
        "actualGasCost": hex(10**15), "actualGasUsed": hex(21_000), "success": False,
        "reason": "0x08c379a0", "logs": [account_log], "receipt": tx_receipt,
    }


def test_reputation_rows_and_stake_status_are_written_in_the_bundler_specs_schema():
    from eth_utils import to_checksum_address

    from bundler.pool.reputation import Entry, Status
    from bundler.pool.staking import DepositInfo
    from bundler.rpc.results import encode_reputation, encode_stake_status

    a, b = "0x" + "ab" * 20, "0x" + "cd" * 20
    assert encode_reputation([(a, Entry(3, 2), Status.OK), (b, Entry(1000, 0), Status.BANNED)]) == [
        {"address": to_checksum_address(a), "opsSeen": "0x3", "opsIncluded": "0x2", "status": "0x0"},
        {"address": to_checksum_address(b), "opsSeen": "0x3e8", "opsIncluded": "0x0", "status": "0x2"}]
    info = DepositInfo(deposit=5, staked=True, stake=10**18, unstake_delay_sec=86_400, withdraw_time=0)
    assert encode_stake_status(a, info, True) == {
        "stakeInfo": {"addr": to_checksum_address(a), "stake": "1000000000000000000", "unstakeDelaySec": "86400"},
        "isStaked": True}
