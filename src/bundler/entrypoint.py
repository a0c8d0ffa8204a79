"""EntryPoint versions as data: address, artifacts, hashing. Pool, sim and builder take one of
these instead of branching on the version."""
from __future__ import annotations

from dataclasses import dataclass

from . import artifacts
from .userop.model import UserOperation
from eth_abi import encode
from eth_hash.auto import keccak

from session_sdk.packing import user_op_hash

from .userop.packing import PACKED_USEROP_TYPE, pack

HANDLE_OPS_SIGNATURE = f"handleOps({PACKED_USEROP_TYPE}[],address)"

HANDLE_OPS_SELECTOR = keccak(HANDLE_OPS_SIGNATURE.encode())[:4]


def handle_ops_calldata(ops, beneficiary: str) -> bytes:
    """handleOps(ops, beneficiary): the same for v0.7 and v0.8."""
    return HANDLE_OPS_SELECTOR + encode([f"{PACKED_USEROP_TYPE}[]", "address"], [[pack(op) for op in ops], beneficiary])


USER_OPERATION_EVENT = "UserOperationEvent(bytes32,address,address,uint256,bool,uint256,uint256)"
USER_OPERATION_REVERT_REASON = "UserOperationRevertReason(bytes32,address,uint256,bytes)"
ACCOUNT_DEPLOYED = "AccountDeployed(bytes32,address,address,address)"
BEFORE_EXECUTION = "BeforeExecution()"


@dataclass(frozen=True)
class EntryPointVersion:
    version: str
    address: str  # lower-case
    npm_package: str
    # CREATE2 salt under the deterministic deployer that yields the canonical address
    create2_salt: bytes

    def user_op_hash(self, op: UserOperation, chain_id: int, eip7702_delegate: str | None = None) -> bytes:
        return user_op_hash(self.version, op, self.address, chain_id, eip7702_delegate)

    @property
    def valid_after_strict(self) -> bool:
        """The EntryPoint's time-range check: v0.7 wants block.timestamp >= validAfter, v0.8
        block.timestamp > validAfter (EntryPoint._getValidationData)."""
        return self.version != "0.7"

    @property
    def supports_eip7702(self) -> bool:
        return self.version != "0.7"

    def artifact(self, name: str) -> dict:
        return artifacts.load(self.npm_package, name)


V07 = EntryPointVersion(
    version="0.7",
    address="0x0000000071727de22e5e9d8baf0edac6f37da032",
    npm_package="contracts-v07",
    create2_salt=bytes.fromhex("90d8084deab30c2a37c45e8d47f49f2f7965183cb6990a98943ef94940681de3"),
)
V08 = EntryPointVersion(
    version="0.8",
    address="0x4337084d9e255ff0702461cf8895ce9e3b5ff108",
    npm_package="contracts-v08",
    create2_salt=bytes.fromhex("0a59dbff790c23c976a548690c27297883cc66b4c67024f9117b0238995e35e9"),
)
ALL = (V07, V08)
BY_ADDRESS = {ep.address: ep for ep in ALL}


def by_address(address: str) -> EntryPointVersion | None:
    return BY_ADDRESS.get(address.lower()) if isinstance(address, str) else None
