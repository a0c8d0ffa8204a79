"""EntryPoint versions as data: address, artifacts, hashing. Pool, sim and builder take one of
these instead of branching on the version."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from . import artifacts
from .userop.model import UserOperation
from eth_abi import encode
from eth_hash.auto import keccak

from .errors import InvalidParams
from .userop.packing import PACKED_USEROP_TYPE, pack, user_op_hash_v07, user_op_hash_v08, user_op_hash_v09

HANDLE_OPS_SIGNATURE = f"handleOps({PACKED_USEROP_TYPE}[],address)"

HANDLE_OPS_SELECTOR = keccak(HANDLE_OPS_SIGNATURE.encode())[:4]


def handle_ops_calldata(ops: Sequence[UserOperation], beneficiary: str) -> bytes:
    """handleOps(ops, beneficiary): the same for v0.7, v0.8 and v0.9."""
    return HANDLE_OPS_SELECTOR + encode([f"{PACKED_USEROP_TYPE}[]", "address"], [[pack(op) for op in ops], beneficiary])


USER_OPERATION_EVENT = "UserOperationEvent(bytes32,address,address,uint256,bool,uint256,uint256)"
USER_OPERATION_REVERT_REASON = "UserOperationRevertReason(bytes32,address,uint256,bytes)"
ACCOUNT_DEPLOYED = "AccountDeployed(bytes32,address,address,address)"
BEFORE_EXECUTION = "BeforeExecution()"


# userOpHash of one version: (op, EntryPoint address, chain id, EIP-7702 delegate) -> hash;
# raises ValueError on a paymaster signature suffix the EntryPoint would revert on
UserOpHasher = Callable[[UserOperation, str, int, "str | None"], bytes]


def hash_v07(op: UserOperation, entry_point: str, chain_id: int, _delegate: str | None) -> bytes:
    """keccak of the packed struct, EntryPoint and chain id (no EIP-7702 in v0.7)."""
    return user_op_hash_v07(op, entry_point, chain_id)


def hash_eip712(op: UserOperation, entry_point: str, chain_id: int, delegate: str | None) -> bytes:
    """v0.8: an EIP-712 typed-data digest, the EIP-7702 delegate in place of the initCode."""
    return user_op_hash_v08(op, entry_point, chain_id, delegate)


def hash_eip712_paymaster_signature(op: UserOperation, entry_point: str, chain_id: int,
                                    delegate: str | None) -> bytes:
    """v0.9: as v0.8, with the paymaster signature suffix left out of the hash."""
    return user_op_hash_v09(op, entry_point, chain_id, delegate)


@dataclass(frozen=True)
class EntryPointVersion:
    """Everything that differs between EntryPoint versions, as data: a new version is one row
    here (pool, sim, builder, gas and sessions read these fields, never the version string)."""

    version: str
    address: str  # lower-case
    npm_package: str
    # CREATE2 salt under the deterministic deployer that yields the canonical address
    create2_salt: bytes
    # the userOpHash function (hash_v07, hash_eip712, hash_eip712_paymaster_signature)
    hash_scheme: UserOpHasher = hash_eip712
    # v0.9: a paymaster signature rides after paymasterData, outside the userOpHash
    paymaster_signature: bool = False
    # EIP-7702 accounts (factory 0x7702 and eip7702Auth)
    supports_eip7702: bool = True
    # the EntryPoint's time-range check: v0.7 wants block.timestamp >= validAfter, v0.8 and
    # v0.9 block.timestamp > validAfter (EntryPoint._getValidationData)
    valid_after_strict: bool = True
    # v0.9: a validity range with the top bit set in both bounds is of block numbers
    block_range_validity: bool = False
    # EntryPointSimulations' own storage words every simulate* call reads (sim prefetch)
    simulation_slots: tuple[int, ...] = ()
    # False when the npm artifact does not reproduce `address` through the CREATE2 deployer:
    # the dev chain then relocates the deployed code there (devchain/deploy.py)
    reproducible: bool = True
    # the Simple7702Account delegate clients use by default for this version (viem's
    # toSimple7702SmartAccount), when the dev chain must provide it; None: not deployed
    simple_7702_account: str | None = None

    def user_op_hash(self, op: UserOperation, chain_id: int, eip7702_delegate: str | None = None) -> bytes:
        if op.paymaster_signature and not self.paymaster_signature:
            raise InvalidParams(f"invalid paymasterSignature: EntryPoint v{self.version} has no paymaster "
                                f"signature (v0.9 and later)")
        if not self.paymaster_signature:
            return self.hash_scheme(op, self.address, chain_id, eip7702_delegate)
        try:
            return self.hash_scheme(op, self.address, chain_id, eip7702_delegate)
        except ValueError as e:  # the EntryPoint reverts on such a paymaster signature suffix
            raise InvalidParams(f"invalid paymasterData: {e}") from None

    def artifact(self, name: str) -> dict:
        return artifacts.load(self.npm_package, name)


V07 = EntryPointVersion(
    version="0.7",
    address="0x0000000071727de22e5e9d8baf0edac6f37da032",
    npm_package="contracts-v07",
    create2_salt=bytes.fromhex("90d8084deab30c2a37c45e8d47f49f2f7965183cb6990a98943ef94940681de3"),
    hash_scheme=hash_v07,
    supports_eip7702=False,
    valid_after_strict=False,
    simulation_slots=(3, 4, 5, 6),
)
V08 = EntryPointVersion(
    version="0.8",
    address="0x4337084d9e255ff0702461cf8895ce9e3b5ff108",
    npm_package="contracts-v08",
    create2_salt=bytes.fromhex("0a59dbff790c23c976a548690c27297883cc66b4c67024f9117b0238995e35e9"),
    simulation_slots=(4, 5),
)
# npm 0.9.0-rc.1 does not reproduce the canonical address with any published salt (v0.8's salt
# puts it at 0xf57e9e98da1eed5f7e4d5c6e76050bb9b3a4e0da): see devchain/deploy.py
V09 = EntryPointVersion(
    version="0.9",
    address="0x433709009b8330fda32311df1c2afa402ed8d009",
    npm_package="contracts-v09",
    create2_salt=bytes.fromhex("0a59dbff790c23c976a548690c27297883cc66b4c67024f9117b0238995e35e9"),
    hash_scheme=hash_eip712_paymaster_signature,
    paymaster_signature=True,
    block_range_validity=True,
    # checked against 0.9.0-rc.1's storageLayout (solc 0.8.28): deposits 0, nonces 1, the EIP712
    # name/version fallbacks 2-3, _senderCreator 4, __domainSeparatorV4 5 (as v0.8); the test
    # is tests/integration/test_sim_validation.py::test_sender_storage_reads_come_from_the_prefetch[v09]
    simulation_slots=(4, 5),
    reproducible=False,
    simple_7702_account="0xa46cc63ebf4bd77888aa327837d20b23a63a56b5",
)
ALL = (V07, V08, V09)
VERSIONS = tuple(ep.version for ep in ALL)  # "0.7", "0.8", "0.9": config choices, policies
BY_ADDRESS = {ep.address: ep for ep in ALL}


def by_address(address: str) -> EntryPointVersion | None:
    return BY_ADDRESS.get(address.lower()) if isinstance(address, str) else None
