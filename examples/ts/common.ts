// What every app-side example shares: command-line arguments (the dev chain's URLs and addresses,
// as `bundler dev` prints them), viem clients, and one JSON line of output per step.
// In your app, import from "@session-bundler/sdk"; the examples use the checkout's build.
import { createPublicClient, createWalletClient, defineChain, http, parseAbi, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createBundlerClient, createPaymasterClient } from "viem/account-abstraction";
import type { SessionSmartAccount } from "../../sdk/ts/dist/index.js";

export type Args = Record<string, string>;

export function parseArgs(argv = process.argv.slice(2)): Args {
  const out: Args = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(argv[i]!);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    out[m[1]!] = m[2] ?? argv[++i]!;
  }
  for (const need of ["bundler", "node"]) if (!out[need]) throw new Error(`--${need} URL is required`);
  return out;
}

export async function clients(args: Args) {
  const probe = createPublicClient({ transport: http(args.node) });
  const id = await probe.getChainId();
  const chain = defineChain({ id, name: `dev-${id}`, nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [args.node!] } } });
  const publicClient = createPublicClient({ chain, transport: http(args.node), pollingInterval: 200 });
  const bundlerFor = (account: SessionSmartAccount) =>
    createBundlerClient({ client: publicClient, transport: http(args.bundler), account, pollingInterval: 200 });
  // ERC-7677: viem asks the paymaster service (pm_* methods; `bundler dev` serves them on the
  // bundler URL) for stub data before estimation and for the signed data before signing
  const paymaster = createPaymasterClient({ transport: http(args.paymaster ?? args.bundler) });
  const sponsoredBundlerFor = (account: SessionSmartAccount) =>
    createBundlerClient({ client: publicClient, transport: http(args.bundler), account, paymaster, pollingInterval: 200 });
  return { chain, publicClient, bundlerFor, sponsoredBundlerFor };
}

/** The dev chain lets anyone set a balance: stands in for the user funding the account. */
export async function devFund(publicClient: { request: (a: { method: any; params: any }) => Promise<unknown> }, address: Address, wei: bigint) {
  await publicClient.request({ method: "anvil_setBalance", params: [address, `0x${wei.toString(16)}`] });
}

export function wallet(chain: ReturnType<typeof defineChain>, node: string, key: Hex) {
  return createWalletClient({ chain, transport: http(node), account: privateKeyToAccount(key) });
}

export const tokenAbi = parseAbi([
  "function mint(address to, uint256 amount)",
  "function transfer(address to, uint256 amount) returns (bool)",
  "function deposit() payable",
  "function balanceOf(address) view returns (uint256)",
]);

export function emit(step: string, details: Record<string, unknown> = {}) {
  process.stdout.write(JSON.stringify({ step, ...details }, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
}

export async function main(run: (args: Args) => Promise<void>) {
  try {
    await run(parseArgs());
  } catch (e) {
    emit("error", { message: (e as Error).message });
    process.exitCode = 1;
  }
}
