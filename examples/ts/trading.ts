// Flow 5 (app side): one-click trading. The user grants, with one signature, ERC-20 transfers of
// the token to one DEX up to 100 tokens in total; the account is funded with tokens, never with
// ETH: the owner's first op and every trade are sponsored through the paymaster service.
//   node examples/ts/trading.js --bundler URL --node URL --factory SESSION_ACCOUNT_FACTORY --token T --dex D --backend ADDRESS
//        --sponsor SPONSOR_PAYMASTER_V07
import { encodeFunctionData, parseUnits, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  DEFAULT_GAS_POLICY, enableSession, erc20TransferPolicy, lifetime, serializeSession, sessionSpec, toSessionAccount,
} from "../../sdk/ts/dist/index.js";
import { clients, emit, main, tokenAbi } from "./common.js";

main(async (args) => {
  const { publicClient, sponsoredBundlerFor } = await clients(args);
  const owner = privateKeyToAccount((process.env.OWNER_KEY as Hex | undefined) ?? generatePrivateKey());
  const factory = args.factory as Address;
  const token = args.token as Address;
  const account = await toSessionAccount({ client: publicClient, entryPoint: "0.7", owner, factory });
  // the owner deploys the account and buys 1000 tokens (anyone may mint the dev token), sponsored
  const client = sponsoredBundlerFor(account);
  const hash = await client.sendUserOperation({ calls: [{ to: token, data: encodeFunctionData({ abi: tokenAbi, functionName: "mint", args: [account.address, parseUnits("1000", 18)] }) }] });
  await client.waitForUserOperationReceipt({ hash, timeout: 60_000 });
  const now = Number((await publicClient.getBlock()).timestamp);
  const spec = sessionSpec({
    signer: args.backend as Address,
    validUntil: now + 24 * 3600,
    policies: [erc20TransferPolicy({ token, to: args.dex as Address, limit: lifetime(parseUnits("100", 18)) })],
    gas: { ...DEFAULT_GAS_POLICY, paymasters: [args.sponsor as Address] },
  });
  const enable = await enableSession({ client: publicClient, owner, account: account.address, spec });
  const session = serializeSession({ chainId: publicClient.chain.id, entryPoint: "0.7", account: account.address, owner: owner.address, spec, enable });
  emit("granted", { account: account.address, session });
});
