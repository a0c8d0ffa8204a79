"""The sponsorship service behind pm_getPaymasterStubData / pm_getPaymasterData (ERC-7677).

Stub data: the policy's rules are checked (so a client learns at once that it will not be
sponsored) and placeholder paymaster fields of the final size are returned for estimation.

Paymaster data: the rules again, then the op's maximum cost is reserved against the policy's
budgets in the store (atomically, shared by the instances of a shared store), the terms are
signed and the reservation is made durable before the answer. The reservation is keyed by the
op's userOpHash (which does not include the account's signature, so it is known now).

EntryPoint v0.9 (context {"separateSignature": true}): the signature goes in the op's
`paymasterSignature`, outside the userOpHash, so the account may sign between the two calls:
the stub's paymasterData (the terms) is then already final, and pm_getPaymasterData signs the
terms the op carries when they are the ones the policy gives. Without that flag the signature
is inside paymasterData on every version, which is what ERC-7677 clients expect (viem's
createPaymasterClient passes on paymasterData, not paymasterSignature).

Settlement: the Settler below follows every open reservation to its op's fate, which the pool
records in the store (mined / dropped): mined ops count their actual gas cost from the
UserOperationEvent, dropped ones count nothing; an op never submitted here counts until its
paymaster signature expires, then whatever the chain says.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_abi import decode

from ..chain.userop_logs import find_event_log
from ..entrypoint import EntryPointVersion
from ..errors import BundlerError, InvalidParams, PaymasterRejected
from ..store import Budget, OpStatus, Sponsorship, SponsorshipState, Store
from ..userop.model import UserOperation
from .data import STUB_SIGNATURE, Terms, decode_terms, encode_paymaster_data, encode_terms, sponsor_hash
from .policy import SPONSOR_EVERYTHING, Policy, Refusal, check_op, session_key_of
from .signer import PaymasterSigner

if TYPE_CHECKING:
    from ..chain.head import HeadTracker
    from ..metrics import Metrics
    from ..chain.client import NodeClient
    from ..pool.mempool import PoolEntry

log = logging.getLogger(__name__)

# validUntil is rounded up to this many seconds, so asking twice for the same op within it
# gives the same paymaster data (and one reservation, not two)
VALIDITY_GRANULARITY_S = 60
SPONSOR_NAME = "bundler-py"


class SponsorshipRefused(PaymasterRejected):
    """A policy refused: error.data names the policy, the rule and what is left."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message, refusal.data())


@dataclass(frozen=True)
class PaymasterSettings:
    contracts: dict[str, str]  # EntryPoint version -> SponsorPaymaster address (lower-case)
    policies: dict[str, Policy]
    default_policy: str = ""
    validity_s: int = 600
    verification_gas: int = 60_000
    post_op_gas: int = 0

    def policy(self, context: Any) -> Policy:
        if context is not None and not isinstance(context, dict):
            raise InvalidParams("invalid context: expected an object such as {\"policyId\": \"...\"}")
        policy_id = (context or {}).get("policyId") or (context or {}).get("sponsorshipPolicyId")
        if policy_id is None:
            policy_id = self.default_policy
            if not policy_id:
                raise InvalidParams("this paymaster sponsors only under a policy: pass {\"policyId\": \"...\"} as "
                                    "the ERC-7677 context (policies: " + ", ".join(sorted(self.policies)) + ")")
        if not isinstance(policy_id, str):
            raise InvalidParams("invalid context.policyId: expected a string")
        if policy_id == SPONSOR_EVERYTHING and self.default_policy == SPONSOR_EVERYTHING:
            return Policy(id=SPONSOR_EVERYTHING)
        policy = self.policies.get(policy_id)
        if policy is None:
            raise InvalidParams(f"unknown sponsorship policy {policy_id!r}")
        return policy


class SponsorService:
    def __init__(self, *, settings: PaymasterSettings, signer: PaymasterSigner, store: Store, head: HeadTracker,
                 chain_id: int, entry_points: list[EntryPointVersion], metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.signer = signer
        self.store = store
        self.head = head
        self.chain_id = chain_id
        self.entry_points = [ep for ep in entry_points if ep.version in settings.contracts]

    def paymaster_for(self, ep: EntryPointVersion) -> str:
        address = self.settings.contracts.get(ep.version)
        if address is None:
            raise InvalidParams(f"this bundler has no paymaster for EntryPoint v{ep.version}")
        return address

    def _check_chain(self, chain_id: int) -> None:
        if chain_id != self.chain_id:
            raise InvalidParams(f"invalid chainId {hex(chain_id)}: this paymaster sponsors on chain {hex(self.chain_id)}")

    def _with_paymaster(self, op: UserOperation, ep: EntryPointVersion) -> UserOperation:
        """The op with our paymaster and gas limits (the client's limits are kept if it set them:
        they are signed, and counted in the op's maximum cost)."""
        return op.with_changes(
            paymaster=self.paymaster_for(ep),
            paymaster_verification_gas_limit=op.paymaster_verification_gas_limit or self.settings.verification_gas,
            paymaster_post_op_gas_limit=op.paymaster_post_op_gas_limit or self.settings.post_op_gas,
        )

    @staticmethod
    def _session_key(op: UserOperation, context: Any) -> str | None:
        key = session_key_of(op)
        if key is None and isinstance(context, dict) and isinstance(context.get("sessionKey"), str):
            key = context["sessionKey"].lower()
        return key

    @staticmethod
    def _separate_signature(ep: EntryPointVersion, context: Any) -> bool:
        """Whether the signature goes in v0.9's paymasterSignature (context separateSignature)."""
        wanted = isinstance(context, dict) and context.get("separateSignature")
        if wanted not in (None, False, True):
            raise InvalidParams("invalid context.separateSignature: expected a boolean")
        if wanted and not ep.paymaster_signature:
            raise InvalidParams(f"context.separateSignature needs EntryPoint v0.9 or later (a paymasterSignature "
                                f"field), not v{ep.version}")
        return bool(wanted)

    def _carried_terms(self, op: UserOperation, fresh: Terms, now: int) -> Terms:
        """The terms the op already carries (from the stub, which the account may have signed
        over) when they are ones we would give now; else the fresh ones."""
        try:
            carried = decode_terms(op.paymaster_data)
        except ValueError:
            return fresh
        same_rules = (carried.valid_after, carried.cost_limit, carried.signature_prefix) == (
            fresh.valid_after, fresh.cost_limit, fresh.signature_prefix)
        return carried if same_rules and now < carried.valid_until <= fresh.valid_until else fresh

    def _terms(self, policy: Policy, now: int, session_key: str | None) -> Terms:
        valid_until = -(-(now + self.settings.validity_s) // VALIDITY_GRANULARITY_S) * VALIDITY_GRANULARITY_S
        if policy.valid_until:
            valid_until = min(valid_until, policy.valid_until)
        prefix = b""
        if policy.session_keys and session_key is not None:
            # the account's signature must be this session key's (mode 0x01 + key)
            prefix = b"\x01" + bytes.fromhex(session_key[2:])
        return Terms(valid_until=valid_until, valid_after=0, cost_limit=policy.max_cost_per_op,
                     signature_prefix=prefix)

    def _budgets(self, policy: Policy, sender: str, now: int) -> list[Budget]:
        start = policy.period_start(now)
        out = []
        if policy.global_budget:
            out.append(Budget(policy.id, start, policy.global_budget))
        if policy.account_budget:
            out.append(Budget(policy.id, start, policy.account_budget, sender))
        return out

    def _refuse_budget(self, policy: Policy, budget: Budget, spent: int, requested: int, now: int) -> None:
        left = max(budget.limit - spent, 0)
        who = "the policy's global" if budget.sender is None else f"sender {budget.sender}'s"
        raise SponsorshipRefused(Refusal(
            policy.id, "globalBudget" if budget.sender is None else "accountBudget",
            f"policy {policy.id!r} does not sponsor this UserOperation: {who} budget of {budget.limit} wei per "
            f"{policy.period_s} s has {left} wei left, the op may cost up to {requested} wei "
            f"(the period ends at {policy.period_end(now)})",
            {"limit": str(budget.limit), "spent": str(spent), "remaining": str(left), "requested": str(requested),
             "periodStart": budget.period_start, "periodEnd": policy.period_end(now),
             **({"sender": budget.sender} if budget.sender else {})},
        ))

    async def stub_data(self, op: UserOperation, ep: EntryPointVersion, chain_id: int, context: Any) -> dict:
        self._check_chain(chain_id)
        policy = self.settings.policy(context)
        header = await self.head.fresh()
        op = self._with_paymaster(op, ep)
        session_key = self._session_key(op, context)
        refusal = check_op(policy, op, ep.version, header.timestamp, session_key)
        if refusal is not None and refusal.rule != "maxCostPerOp":  # gas is not final yet
            raise SponsorshipRefused(refusal)
        for budget in self._budgets(policy, op.sender, header.timestamp):
            spent = self.store.sponsorship_spent(budget)
            if spent >= budget.limit:
                self._refuse_budget(policy, budget, spent, 0, header.timestamp)
        terms = self._terms(policy, header.timestamp, session_key)
        if self._separate_signature(ep, context):
            # the terms are final already: the account may sign over them before pm_getPaymasterData
            fields = {"paymasterData": "0x" + encode_terms(terms).hex(), "paymasterSignature": "0x" + STUB_SIGNATURE.hex()}
        else:
            fields = {"paymasterData": "0x" + encode_paymaster_data(terms, STUB_SIGNATURE).hex()}
        return {
            "paymaster": op.paymaster,
            **fields,
            "paymasterVerificationGasLimit": hex(op.paymaster_verification_gas_limit),
            "paymasterPostOpGasLimit": hex(op.paymaster_post_op_gas_limit),
            "sponsor": {"name": SPONSOR_NAME},
            "isFinal": False,
        }

    async def paymaster_data(self, op: UserOperation, ep: EntryPointVersion, chain_id: int, context: Any) -> dict:
        self._check_chain(chain_id)
        policy = self.settings.policy(context)  # an unknown policy id is a params error, not counted
        try:
            answer = await self._sign(policy, op, ep, context)
        except SponsorshipRefused as e:
            self.metrics.sponsorships.labels(policy.id, "refused", e.data["rule"]).inc()
            raise
        self.metrics.sponsorships.labels(policy.id, "sponsored", "").inc()
        return answer

    async def _sign(self, policy: Policy, op: UserOperation, ep: EntryPointVersion, context: Any) -> dict:
        separate = self._separate_signature(ep, context)
        header = await self.head.fresh()
        now = header.timestamp
        ours = op.paymaster == self.paymaster_for(ep)
        op = self._with_paymaster(op, ep)
        session_key = self._session_key(op, context)
        refusal = check_op(policy, op, ep.version, now, session_key)
        if refusal is not None:
            raise SponsorshipRefused(refusal)
        terms = self._terms(policy, now, session_key)
        if separate and ours:
            terms = self._carried_terms(op, terms, now)
        digest = sponsor_hash(op, terms, chain_id=self.chain_id, entry_point=ep.address, paymaster=self.paymaster_for(ep))
        signature = self.signer.sign(digest)
        if separate:
            signed = op.with_changes(paymaster_data=encode_terms(terms), paymaster_signature=signature)
        else:
            signed = op.with_changes(paymaster_data=encode_paymaster_data(terms, signature), paymaster_signature=b"")
        op_hash = "0x" + ep.user_op_hash(signed, self.chain_id, _delegate(signed)).hex()
        requested = signed.max_cost()
        sponsorship = Sponsorship(
            op_hash=op_hash, policy_id=policy.id, sender=op.sender, entry_point=ep.address,
            period_start=policy.period_start(now), amount=requested, valid_until=terms.valid_until,
            from_block=header.number,
        )
        exceeded = self.store.reserve_sponsorship(sponsorship, self._budgets(policy, op.sender, now))
        if exceeded is not None:
            self._refuse_budget(policy, exceeded[0], exceeded[1], requested, now)
        try:
            await self.store.flush()
        except Exception as e:
            raise BundlerError(f"the paymaster could not record the sponsorship ({e}); try again") from None
        log.info("sponsored op %s of %s under policy %s (up to %d wei)", op_hash, op.sender, policy.id, requested,
                 extra={"op_hash": op_hash})
        return {
            "paymaster": signed.paymaster,
            "paymasterData": "0x" + signed.paymaster_data.hex(),
            **({"paymasterSignature": "0x" + signature.hex()} if separate else {}),
            "paymasterVerificationGasLimit": hex(signed.paymaster_verification_gas_limit),
            "paymasterPostOpGasLimit": hex(signed.paymaster_post_op_gas_limit),
        }

    def budget_status(self, policy_id: str, sender: str | None, now: int) -> dict:
        """What is left of a policy's budgets now (pm_getSponsorshipStatus)."""
        policy = self.settings.policy({"policyId": policy_id})
        out: dict[str, Any] = {"policyId": policy.id, "periodStart": policy.period_start(now),
                               "periodEnd": policy.period_end(now)}
        for name, budget in (("global", Budget(policy.id, policy.period_start(now), policy.global_budget)),
                             ("account", Budget(policy.id, policy.period_start(now), policy.account_budget, sender))):
            if not budget.limit or (name == "account" and sender is None):
                continue
            spent = self.store.sponsorship_spent(budget)
            out[name] = {"limit": str(budget.limit), "spent": str(spent), "remaining": str(max(budget.limit - spent, 0))}
        return out


def _delegate(op: UserOperation) -> str | None:
    return op.eip7702_auth.address if op.is_eip7702 and op.eip7702_auth else None


class Settler:
    """Follows open reservations to their op's fate (the store's op record) and settles them."""

    def __init__(self, *, store: Store, node: NodeClient, head: HeadTracker, metrics: Metrics, interval_s: float = 2.0, lookback_blocks: int = 100_000):
        self.store = store
        self.metrics = metrics
        self.node = node
        self.head = head
        self.interval_s = interval_s
        self.lookback_blocks = lookback_blocks
        self._wake = asyncio.Event()

    # mempool observer (pool.mempool.PoolObserver): an op entering the pool changes nothing here
    def added(self, _entry: PoolEntry) -> None:
        pass

    # an op left the pool; its fate is recorded right after, in the same step
    def removed(self, _entry: PoolEntry, _mined_block: int | None = None) -> None:
        self._wake.set()

    def cleared(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.settle_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let settlement stop the bundler; the next round retries
                log.exception("paymaster settlement round failed")
            try:
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    async def settle_once(self) -> int:
        """One pass over the open reservations; returns how many were settled or released."""
        done = 0
        now = self.head.latest.timestamp if self.head.latest else 0
        for s in self.store.open_sponsorships():
            record = self.store.get(s.op_hash)
            if record is not None and record.status == OpStatus.MINED:
                cost = await self._actual_cost(s, record.block_number or s.from_block)
                finished = self.store.finish_sponsorship(s.op_hash, SponsorshipState.SETTLED,
                                                         s.amount if cost is None else cost)
            elif record is not None and record.status == OpStatus.DROPPED:
                finished = self.store.finish_sponsorship(s.op_hash, SponsorshipState.RELEASED)
            elif record is None and now > s.valid_until:
                # never sent here and its paymaster signature is over: mined elsewhere, or unused
                cost = await self._actual_cost(s, s.from_block)
                if cost is None:
                    finished = self.store.finish_sponsorship(s.op_hash, SponsorshipState.RELEASED)
                else:
                    finished = self.store.finish_sponsorship(s.op_hash, SponsorshipState.SETTLED, cost)
            else:
                continue
            if finished is not None:  # None: another instance on the store settled it first
                done += 1
                self.metrics.sponsorships.labels(s.policy_id, finished.state.value, "").inc()
                log.info("sponsorship of op %s %s (%d wei)", s.op_hash, finished.state.value, finished.amount,
                         extra={"op_hash": s.op_hash})
        if done:
            await self.store.flush()
        return done

    async def _actual_cost(self, s: Sponsorship, from_block: int) -> int | None:
        """actualGasCost of the op's UserOperationEvent, None if it is not on chain."""
        event = await find_event_log(self.node, s.op_hash, [s.entry_point], max(from_block - 1, 0))
        if event is None:
            return None
        _nonce, _success, cost, _used = decode(["uint256", "bool", "uint256", "uint256"],
                                              bytes.fromhex(event["data"][2:]))
        return cost
