// Flow 1 (app side): give a backend key any target, no ETH, for 3 hours, gas sponsored. The
// account does not exist yet and holds no ETH: the owner signs the grant once (EIP-712, enable
// mode), naming the paymaster that pays the session's gas (`bundler dev` sponsors everything
// through its SponsorPaymaster), and the backend's first op deploys the account, enables the
// session and acts, all in one sponsored UserOperation.
//   node examples/ts/backend_key.js --bundler URL --node URL --factory SESSION_ACCOUNT_FACTORY --backend ADDRESS
//        --sponsor SPONSOR_PAYMASTER_V07
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import type { Address, Hex } from "viem";
import { callPolicy, DEFAULT_GAS_POLICY, enableSession, serializeSession, sessionSpec, toSessionAccount } from "../../sdk/ts/dist/index.js";
import { clients, emit, main } from "./common.js";

main(async (args) => {
  const { publicClient } = await clients(args);
  const owner = privateKeyToAccount((process.env.OWNER_KEY as Hex | undefined) ?? generatePrivateKey());
  const factory = args.factory as Address;
  const account = await toSessionAccount({ client: publicClient, entryPoint: "0.7", owner, factory });
  const now = Number((await publicClient.getBlock()).timestamp);
  const spec = sessionSpec({
    signer: args.backend as Address,
    validUntil: now + 3 * 3600,
    policies: [callPolicy({})], // any target, any function, maxValuePerUse 0: no ETH
    gas: { ...DEFAULT_GAS_POLICY, paymasters: [args.sponsor as Address] }, // the only gas it may use: sponsored
  });
  const enable = await enableSession({ client: publicClient, owner, account: account.address, spec });
  const session = serializeSession({
    chainId: publicClient.chain.id, entryPoint: "0.7", account: account.address, owner: owner.address,
    factory, salt: 0n, spec, enable,
  });
  emit("granted", {
    account: account.address, deployed: await account.isDeployed(), validUntil: spec.validUntil, session,
    accountWei: await publicClient.getBalance({ address: account.address }),
  });
});
