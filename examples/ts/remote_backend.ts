// Flow 3 (app side): a remote backend with its own key is authorised for two methods of one
// contract (deposit() with at most 0.001 ETH per call and 0.003 ETH in total, and mint()), for one
// hour; later the owner revokes it with a transaction of its own, and the bundler drops the
// backend's ops still pending. The account holds ETH only for the deposits themselves: the gas of
// the grant op and of every backend op is sponsored by bundler dev's SponsorPaymaster.
//   OWNER_KEY=0x… node examples/ts/remote_backend.js grant --bundler URL --node URL --factory F --token T --backend ADDRESS
//        --sponsor SPONSOR_PAYMASTER_V07
//   OWNER_KEY=0x… node examples/ts/remote_backend.js revoke --bundler URL --node URL --account A --backend ADDRESS
import { parseEther, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { DEFAULT_GAS_POLICY, callPolicy, grantSessionCall, lifetime, readSession, serializeSession, sessionAccountAbi, sessionSpec, toSessionAccount } from "../../sdk/ts/dist/index.js";
import { clients, devFund, emit, wallet } from "./common.js";
import { parseArgs } from "./common.js";

const command = process.argv[2];
const args = parseArgs(process.argv.slice(3));
const owner = privateKeyToAccount(process.env.OWNER_KEY as Hex);

async function grant() {
  const { publicClient, sponsoredBundlerFor } = await clients(args);
  const factory = args.factory as Address;
  const token = args.token as Address;
  const account = await toSessionAccount({ client: publicClient, entryPoint: "0.7", owner, factory });
  await devFund(publicClient, account.address, parseEther("1"));
  const now = Number((await publicClient.getBlock()).timestamp);
  const spec = sessionSpec({
    signer: args.backend as Address,
    validUntil: now + 3600,
    policies: [
      callPolicy({ target: token, function: "deposit()", maxValuePerUse: parseEther("0.001"), valueLimit: lifetime(parseEther("0.003")) }),
      callPolicy({ target: token, function: "mint(address,uint256)" }),
    ],
    gas: { ...DEFAULT_GAS_POLICY, paymasters: [args.sponsor as Address] },
  });
  // the account's first op deploys it and grants the session (owner mode)
  const client = sponsoredBundlerFor(account);
  const hash = await client.sendUserOperation({ calls: [grantSessionCall(account.address, spec)] });
  const receipt = await client.waitForUserOperationReceipt({ hash, timeout: 60_000 });
  const session = serializeSession({ chainId: publicClient.chain.id, entryPoint: "0.7", account: account.address, owner: owner.address, spec });
  emit("granted", { account: account.address, success: receipt.success, session });
}

async function revoke() {
  const { chain, publicClient } = await clients(args);
  await devFund(publicClient, owner.address, parseEther("1"));
  // a transaction of its own, not an op in the bundle that may carry the backend's pending ops
  const hash = await wallet(chain, args.node!, process.env.OWNER_KEY as Hex).writeContract({
    address: args.account as Address, abi: sessionAccountAbi, functionName: "revokeSession", args: [args.backend as Address], chain,
  } as never);
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  const onChain = await readSession(publicClient, args.account as Address, args.backend as Address);
  emit("revoked", { success: receipt.status === "success", status: onChain.status, block: receipt.blockNumber });
}

(command === "grant" ? grant() : command === "revoke" ? revoke() : Promise.reject(new Error(`unknown command ${command}`)))
  .catch((e) => { emit("error", { message: (e as Error).message }); process.exitCode = 1; });
