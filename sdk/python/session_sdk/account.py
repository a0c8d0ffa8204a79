"""A SessionAccount seen from a backend: build, estimate, sign (owner, session or enable mode),
send and wait for UserOperations through a bundler.

    account = SessionAccount.from_grant(deserialize_session(text), session_key, bundler_url)
    receipt = account.send_and_wait([Call(token, 0, transfer_data)])
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from eth_abi import decode, encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector as selector

from .types import SessionSpec
from .eip712 import eip712_spec_digest
from .signatures import (
    DUMMY_ECDSA_SIGNATURE, encode_enable_signature, encode_owner_signature, encode_session_signature, sign_digest,
)
from .calldata import Call, encode_create_account, encode_execute, encode_execute_batch
from .addresses import delegation_code
from .client import BundlerClient, JsonRpc, PaymasterClient, with_paymaster_fields
from .entrypoints import EntryPoint, entry_point
from .serialize import SessionGrant
from .userop import EIP7702_FACTORY, Authorization, UserOperation

SEL_GET_NONCE = selector("getNonce(address,uint192)")
SEL_GRANT_NONCE = selector("grantNonce(address)")
SEL_FACTORY_GET_ADDRESS = selector("getAddress(address,uint256)")

# a new op's limits before estimation (the bundler replaces them)
_ESTIMATE_PLACEHOLDER_GAS = 0


def address_of(private_key: str) -> str:
    return Account.from_key(private_key).address.lower()


@dataclass(frozen=True)
class SessionKey:
    """The backend's session key and what it was granted. `enable` = (owner signature, grant
    nonce) when the first op must carry the grant (enable mode)."""

    private_key: str
    spec: SessionSpec | None = None
    enable: tuple[bytes, int] | None = None

    @property
    def address(self) -> str:
        return address_of(self.private_key)


class SessionAccount:
    def __init__(self, *, bundler: BundlerClient | str, node: JsonRpc | str | None = None, entry_point_version: str = "0.7",
                 owner: str, address: str | None = None, factory: str | None = None, salt: int = 0,
                 eip7702_delegate: str | None = None, owner_key: str | None = None, session: SessionKey | None = None,
                 chain_id: int | None = None, nonce_key: int = 0, paymaster: PaymasterClient | str | None = None):
        self.bundler = BundlerClient(bundler) if isinstance(bundler, str) else bundler
        # ERC-7677 sponsorship: stub data before estimation, the signed data before signing (a
        # session's grant must list the paymaster in gas.paymasters)
        self.paymaster = PaymasterClient(paymaster) if isinstance(paymaster, str) else paymaster
        # node reads go to the node when given, else through the bundler (it forwards eth_call & co.)
        self.node = (JsonRpc(node) if isinstance(node, str) else node) or self.bundler
        self.entry_point: EntryPoint = entry_point(entry_point_version)
        self.owner = owner.lower()
        self.owner_key = owner_key
        self.factory = factory.lower() if factory else None
        self.salt = salt
        self.eip7702_delegate = eip7702_delegate.lower() if eip7702_delegate else None
        self.session = session
        self.nonce_key = nonce_key
        if session is None and owner_key is None:
            raise ValueError("give owner_key (owner mode) or session (session mode)")
        if owner_key is not None and address_of(owner_key) != self.owner:
            raise ValueError("owner_key is not the owner's key")
        self.chain_id = chain_id if chain_id is not None else self.node.chain_id()
        if address:
            self.address = address.lower()
        elif self.eip7702_delegate:
            self.address = self.owner
        elif self.factory:
            out = self.node.eth_call(self.factory, SEL_FACTORY_GET_ADDRESS + encode(["address", "uint256"], [self.owner, salt]))
            self.address = decode(["address"], out)[0].lower()
        else:
            raise ValueError("give the account address, a factory, or eip7702_delegate")

    @classmethod
    def from_grant(cls, grant: SessionGrant, session_key: str, bundler: BundlerClient | str,
                   node: JsonRpc | str | None = None, paymaster: PaymasterClient | str | None = None) -> "SessionAccount":
        """The account of a grant an app handed over (deserialize_session), driven by its session key."""
        key = SessionKey(session_key, grant.spec, grant.enable)
        if key.address != grant.spec.signer:
            raise ValueError(f"the session key {key.address} is not the grant's signer {grant.spec.signer}")
        return cls(bundler=bundler, node=node, entry_point_version=grant.entry_point, owner=grant.owner,
                   address=grant.account, factory=grant.factory, salt=grant.salt,
                   eip7702_delegate=grant.eip7702_implementation, session=key, chain_id=grant.chain_id,
                   paymaster=paymaster)

    # ------------------------------------------------------------ chain reads

    def code(self) -> bytes:
        return self.node.get_code(self.address)

    def deployed(self) -> bool:
        code = self.code()
        if self.eip7702_delegate:
            return code == delegation_code(self.eip7702_delegate)
        return bool(code)

    def nonce(self) -> int:
        out = self.node.eth_call(self.entry_point.address, SEL_GET_NONCE + encode(["address", "uint192"], [self.address, self.nonce_key]))
        return decode(["uint256"], out)[0]

    def grant_nonce(self, signer: str) -> int:
        if not self.deployed():
            return 0
        return decode(["uint64"], self.node.eth_call(self.address, SEL_GRANT_NONCE + encode(["address"], [signer])))[0]

    def period_index(self) -> int:
        spec = self.session.spec if self.session else None
        if spec is None or spec.period == 0:
            return 0
        now = self.node.block_timestamp()
        return 0 if now < spec.valid_after else (now - spec.valid_after) // spec.period

    def _needs_enable(self) -> bool:
        s = self.session
        return bool(s and s.enable) and self.grant_nonce(s.address) == s.enable[1]

    # ------------------------------------------------------------ building and signing

    def call_data(self, calls: Sequence[Call | tuple]) -> bytes:
        calls = [c if isinstance(c, Call) else Call(*c) for c in calls]
        if len(calls) == 1:
            return encode_execute(calls[0].target, calls[0].value, calls[0].data)
        return encode_execute_batch(calls)

    def _authorization(self) -> Authorization:
        if self.owner_key is None:
            raise ValueError("the EOA is not delegated yet: its owner_key must sign the EIP-7702 authorization")
        nonce = self.node.transaction_count(self.address)
        signed = Account.sign_authorization({"chainId": self.chain_id, "address": self.eip7702_delegate, "nonce": nonce},
                                            self.owner_key)
        return Authorization(self.chain_id, self.eip7702_delegate, nonce, signed.y_parity, signed.r, signed.s)

    def build(self, calls: Sequence[Call | tuple], *, nonce: int | None = None) -> UserOperation:
        """An unsigned op (stub signature, fees from the bundler's gas price, gas not estimated)."""
        max_fee, priority = self.bundler.gas_price("fast")
        factory, factory_data, auth = None, b"", None
        if not self.deployed():
            if self.eip7702_delegate:
                factory, auth = EIP7702_FACTORY, self._authorization()
            elif self.factory:
                factory, factory_data = self.factory, encode_create_account(self.owner, self.salt)
        op = UserOperation(
            sender=self.address, nonce=self.nonce() if nonce is None else nonce, call_data=self.call_data(calls),
            call_gas_limit=_ESTIMATE_PLACEHOLDER_GAS, verification_gas_limit=_ESTIMATE_PLACEHOLDER_GAS,
            pre_verification_gas=_ESTIMATE_PLACEHOLDER_GAS, max_fee_per_gas=max_fee, max_priority_fee_per_gas=priority,
            signature=b"", factory=factory, factory_data=factory_data, eip7702_auth=auth,
        )
        op = replace(op, signature=self.stub_signature())
        if self.paymaster is not None:
            op = with_paymaster_fields(op, self.paymaster.stub_data(op, self.entry_point.address, self.chain_id))
        return op

    def stub_signature(self) -> bytes:
        dummy = DUMMY_ECDSA_SIGNATURE
        if self.session is None:
            return encode_owner_signature(dummy)
        period = self.period_index()
        if self._needs_enable():
            return encode_enable_signature(self.session.spec, self.session.enable[1], dummy, period, dummy)
        return encode_session_signature(self.session.address, period, dummy)

    def estimate(self, op: UserOperation) -> UserOperation:
        est = self.bundler.estimate_user_operation_gas(op, self.entry_point.address)
        return replace(op, call_gas_limit=est["callGasLimit"], verification_gas_limit=est["verificationGasLimit"],
                       pre_verification_gas=est["preVerificationGas"])

    def user_op_hash(self, op: UserOperation) -> bytes:
        return self.entry_point.user_op_hash(op, self.chain_id, self.eip7702_delegate if op.is_eip7702 else None)

    def sign(self, op: UserOperation) -> UserOperation:
        """Signs `op` (its paymaster fields first: the userOpHash covers them)."""
        if self.paymaster is not None and op.paymaster is not None:
            op = with_paymaster_fields(replace(op, signature=self.stub_signature()),
                                       self.paymaster.data(op, self.entry_point.address, self.chain_id))
        digest = self.user_op_hash(op)
        if self.session is None:
            return replace(op, signature=encode_owner_signature(sign_digest(self.owner_key, digest)))
        s = self.session
        sig = sign_digest(s.private_key, digest)
        period = self.period_index()
        if self._needs_enable():
            owner_sig, grant_nonce = s.enable
            return replace(op, signature=encode_enable_signature(s.spec, grant_nonce, owner_sig, period, sig))
        return replace(op, signature=encode_session_signature(s.address, period, sig))

    # ------------------------------------------------------------ sending

    def send(self, calls: Sequence[Call | tuple], *, nonce: int | None = None) -> str:
        """Build, estimate, sign and send; the userOpHash. RpcError (with .refusal) when refused."""
        return self.bundler.send_user_operation(self.sign(self.estimate(self.build(calls, nonce=nonce))),
                                                self.entry_point.address)

    def send_and_wait(self, calls: Sequence[Call | tuple], *, timeout: float = 60.0) -> dict:
        return self.bundler.wait_for_receipt(self.send(calls), timeout=timeout)


def enable_signature(owner_key: str, spec: SessionSpec, account: str, chain_id: int, nonce: int) -> bytes:
    """The owner's enable-mode signature (EIP-712 EnableSession) when the backend holds the owner key."""
    return sign_digest(owner_key, eip712_spec_digest(spec, nonce, account, chain_id))
