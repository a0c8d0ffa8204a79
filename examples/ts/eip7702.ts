// Flow 2 (app side): an EIP-7702 EOA becomes a SessionAccount in its first UserOperation (it
// signs the authorization; the op's gas is sponsored through the paymaster service) and, in the
// same op, grants two sessions whose ops are sponsored too (gas.paymasters names the sponsor).
// The EOA holds only the ETH its sessions transfer (0.06), never any for gas:
//   - backend A: ERC-20 transfers of at most 50 tokens each, and ETH to one recipient (0.01 per use);
//   - backend B: full permissions (wildcard) for 10 minutes.
//   OWNER_KEY=0x… node examples/ts/eip7702.js --bundler URL --node URL --implementation SESSION_ACCOUNT_V08
//        --token TOKEN --backend ADDRESS_A --full ADDRESS_B --to RECIPIENT --sponsor SPONSOR_PAYMASTER_V08
import { encodeFunctionData, parseEther, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  callPolicy, DEFAULT_GAS_POLICY, eip7702Authorization, grantSessionCall, lifetime, lte, serializeSession, sessionSpec, toSessionAccount, transferPolicy,
} from "../../sdk/ts/dist/index.js";
import { clients, devFund, emit, main, tokenAbi } from "./common.js";

main(async (args) => {
  const { publicClient, sponsoredBundlerFor } = await clients(args);
  const eoa = privateKeyToAccount(process.env.OWNER_KEY as Hex);
  const implementation = args.implementation as Address;
  const token = args.token as Address;
  await devFund(publicClient, eoa.address, parseEther("0.06")); // what the sessions transfer, no gas money
  const gas = { ...DEFAULT_GAS_POLICY, paymasters: [args.sponsor as Address] };
  const account = await toSessionAccount({ client: publicClient, entryPoint: "0.8", owner: eoa, eip7702: { implementation } });
  const now = Number((await publicClient.getBlock()).timestamp);
  const limited = sessionSpec({
    signer: args.backend as Address,
    validUntil: now + 24 * 3600,
    policies: [
      callPolicy({ target: token, function: tokenAbi[1], args: { amount: lte(50n) } }), // transfer(to, amount <= 50)
      transferPolicy({ target: args.to as Address, maxValuePerUse: parseEther("0.01"), valueLimit: lifetime(parseEther("0.02")) }),
    ],
    gas,
  });
  const full = sessionSpec({ signer: args.full as Address, validUntil: now + 10 * 60, wildcard: true, gas });
  const client = sponsoredBundlerFor(account);
  const hash = await client.sendUserOperation({
    calls: [
      grantSessionCall(eoa.address, limited),
      grantSessionCall(eoa.address, full),
      { to: token, data: encodeFunctionData({ abi: tokenAbi, functionName: "mint", args: [eoa.address, 500n] }) },
    ],
    authorization: await eip7702Authorization(account, eoa),
  });
  const receipt = await client.waitForUserOperationReceipt({ hash, timeout: 60_000 });
  const code = await publicClient.getCode({ address: eoa.address });
  const grant = (spec: typeof limited) => serializeSession({
    chainId: publicClient.chain.id, entryPoint: "0.8", account: eoa.address, owner: eoa.address,
    eip7702Implementation: implementation, spec,
  });
  emit("granted", {
    account: eoa.address, success: receipt.success, code, limited: grant(limited), full: grant(full),
    paymaster: receipt.paymaster, accountWei: await publicClient.getBalance({ address: eoa.address }),
  });
});
