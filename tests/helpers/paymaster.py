"""Paymasters in tests: ERC-7677 client steps against the bundler's pm_* methods (`unsigned`,
`sponsor`), and the sample VerifyingPaymaster of @account-abstraction/contracts 0.7.0 on a dev
chain (the 0.8.0 package ships no sample paymaster artifact), whose paymasterAndData =
paymaster | verificationGasLimit (16) | postOpGasLimit (16) | abi.encode(validUntil, validAfter)
| signature over toEthSignedMessageHash(getHash(op, validUntil, validAfter)).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from eth_abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_defunct

from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc
from bundler.devchain.paymaster import deploy_paymaster, fund_paymaster
from bundler.entrypoint import ALL, EntryPointVersion
from bundler.userop import UserOperation, format_user_operation, pack, decode_user_operation
from bundler.userop.packing import PACKED_USEROP_TYPE

from .accounts import SimpleAccountHelper, eth_call, mine, selector, send_tx, wait_receipt

SEL_GET_HASH = selector(f"getHash({PACKED_USEROP_TYPE},uint48,uint48)")
SEL_DEPOSIT = selector("deposit()")


@dataclass
class VerifyingPaymasterHelper:
    url: str
    ep: EntryPointVersion
    address: str
    signer_key: str

    @classmethod
    def deploy(cls, url: str, ep: EntryPointVersion, signer_key: str | None = None) -> "VerifyingPaymasterHelper":
        if ep.version != "0.7":
            raise ValueError("only the 0.7.0 package has a VerifyingPaymaster artifact")
        signer_key = signer_key or "0x" + os.urandom(32).hex()
        signer = Account.from_key(signer_key).address
        bytecode = bytes.fromhex(ep.artifact("VerifyingPaymaster")["bytecode"][2:])
        init = bytecode + encode(["address", "address"], [ep.address, signer])
        tx_hash = rpc(url, "eth_sendTransaction", [{
            "from": ANVIL_ACCOUNT0, "data": "0x" + init.hex(), "gas": hex(5_000_000)}])
        receipt = wait_receipt(url, tx_hash)
        if receipt["status"] != "0x1":
            raise RuntimeError("VerifyingPaymaster deployment reverted")
        return cls(url, ep, receipt["contractAddress"].lower(), signer_key)

    def deposit(self, wei: int) -> None:
        send_tx(self.url, ANVIL_ACCOUNT0, self.address, SEL_DEPOSIT, value=wei)

    def attach(self, op: UserOperation, *, verification_gas: int = 100_000, post_op_gas: int = 0,
               valid_until: int = 0, valid_after: int = 0, signature: bytes | None = None,
               key: str | None = None) -> UserOperation:
        """Set paymaster fields and sign them (signature=... to put given bytes instead)."""
        op = op.with_changes(
            paymaster=self.address,
            paymaster_verification_gas_limit=verification_gas,
            paymaster_post_op_gas_limit=post_op_gas,
            paymaster_data=encode(["uint48", "uint48"], [valid_until, valid_after]) + b"\x00" * 65,
        )
        if signature is None:
            h = eth_call(self.url, self.address, SEL_GET_HASH + encode(
                [PACKED_USEROP_TYPE, "uint48", "uint48"], [pack(op), valid_until, valid_after]))
            (digest,) = decode(["bytes32"], h)
            signature = bytes(Account.sign_message(encode_defunct(primitive=digest), key or self.signer_key).signature)
        return op.with_changes(paymaster_data=encode(["uint48", "uint48"], [valid_until, valid_after]) + signature)


def sponsor_paymasters(url: str, signer: str, eps=ALL, deposit: int = 10**19) -> dict[str, str]:
    """EntryPoint version -> a SponsorPaymaster trusting `signer`, deployed and funded (then a
    block is mined, so simulation sees the deposit)."""
    out = {}
    for ep in eps:
        out[ep.version] = deploy_paymaster(url, ep, signer)
        fund_paymaster(url, out[ep.version], deposit)
    mine(url)
    return out


def unsigned(acct: SimpleAccountHelper, target: str | None = None, **changes) -> dict:
    return format_user_operation(acct.op(acct.execute(target or "0x" + os.urandom(20).hex(), 0, b"\x01"), **changes))


async def sponsor(client, chain, acct, context=None, **changes) -> dict:
    """stub, then data, as a client does; returns the op (RPC form) signed by the account."""
    op = unsigned(acct, **changes)
    stub = await client.call("pm_getPaymasterStubData", op, acct.ep.address, hex(chain.chain_id), context)
    assert stub["isFinal"] is False and stub["paymaster"]
    op.update({k: stub[k] for k in ("paymaster", "paymasterData", "paymasterVerificationGasLimit",
                                     "paymasterPostOpGasLimit")})
    data = await client.call("pm_getPaymasterData", op, acct.ep.address, hex(chain.chain_id), context)
    op.update(data)
    return format_user_operation(acct.sign(decode_user_operation(op), chain.chain_id))
