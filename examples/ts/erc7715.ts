// Flow 4 (app side): an ERC-7715-style request (wallet_grantPermissions shape) with a window
// (validAfter / validUntil) and a usage limit, granted by the owner's one signature; the
// permissionsContext goes to the backend. The account is never funded: ERC-7715 has no field for
// gas, so the grant names bundler dev's SponsorPaymaster beside the request, and every op of the
// backend (the first one deploys the account) is sponsored.
//   node examples/ts/erc7715.js --bundler URL --node URL --factory SESSION_ACCOUNT_FACTORY_V08 --token T --backend ADDRESS
//        --sponsor SPONSOR_PAYMASTER_V08
import { toHex, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { DEFAULT_GAS_POLICY, grantPermissions, toSessionAccount } from "../../sdk/ts/dist/index.js";
import { clients, emit, main } from "./common.js";

main(async (args) => {
  const { publicClient } = await clients(args);
  const owner = privateKeyToAccount((process.env.OWNER_KEY as Hex | undefined) ?? generatePrivateKey());
  const account = await toSessionAccount({ client: publicClient, entryPoint: "0.8", owner, factory: args.factory as Address });
  const now = Number((await publicClient.getBlock()).timestamp);
  const response = await grantPermissions({
    account, owner,
    gas: { ...DEFAULT_GAS_POLICY, paymasters: [args.sponsor as Address] },
    request: {
      chainId: toHex(publicClient.chain.id),
      address: account.address,
      expiry: now + 3600,
      signer: { type: "account", data: { address: args.backend as Address } },
      permissions: [{ type: "contract-call", data: { address: args.token, functions: [{ signature: "mint(address,uint256)" }] } }],
      policies: [
        { type: "timestamp", data: { validAfter: now - 60, validUntil: now + 1800 } },
        { type: "call-limit", data: { count: 3 } },
      ],
    },
  });
  emit("granted", {
    account: account.address, validAfter: response.spec.validAfter, validUntil: response.spec.validUntil,
    usageLimit: response.spec.usageLimit, permissionsContext: response.permissionsContext,
  });
});
