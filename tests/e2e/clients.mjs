#!/usr/bin/env node
// End-to-end check of the bundler with real, unmodified ERC-4337 clients from npm.
//
//   node tests/e2e/clients.mjs --client viem-v08|viem-v09|permissionless-v07|all \
//        --bundler http://127.0.0.1:PORT --node http://127.0.0.1:PORT
//
// Sponsored (ERC-7677) runs: --client viem-paymaster-v07|viem-paymaster-v08|viem-paymaster-v09|
// permissionless-paymaster-v07|permissionless-paymaster-v08|permissionless-paymaster-v09
// [--paymaster URL] [--policy ID]:
// an unfunded counterfactual account (v0.9: a fresh EOA with no ether, delegating to viem's
// Simple7702Account in its first op) sends ops paid by the paymaster service (viem's
// createPaymasterClient on --paymaster, default BUNDLER/paymaster; permissionless on the
// bundler URL itself, its `paymaster:` option), context {policyId} when --policy is given.
//
// URLs may also come from the environment (BUNDLER_URL, NODE_URL) and the client from
// E2E_CLIENT. The bundler must bundle by itself (auto mode): the script only sends
// user operations and waits for their receipts, like an app would.
//
// Output: one JSON line per check ({"check", "ok", ...}). On the first failure the script
// prints a line with ok=false, the error message, the JSON-RPC error code/message the
// bundler (or node) returned, and the last bundler requests/responses; exit code 1.

import {
  createPublicClient,
  createWalletClient,
  defineChain,
  getAddress,
  http,
  parseEther,
} from "viem";
import { privateKeyToAccount, generatePrivateKey } from "viem/accounts";
import {
  createBundlerClient,
  createPaymasterClient,
  entryPoint07Address,
  entryPoint08Address,
  entryPoint09Address,
  toSimple7702SmartAccount,
} from "viem/account-abstraction";
// Subpath imports on purpose: the package root (and "permissionless/accounts") start a
// dynamic import("ox") for passkey accounts; ox is an optional peer dependency that the
// toolchain does not install, and the rejected import kills node (unhandled rejection).
import { createSmartAccountClient } from "permissionless/clients";
import { SimpleSmartAccount } from "permissionless/accounts/simple";

const { toSimpleSmartAccount } = SimpleSmartAccount;

const ANVIL_ACCOUNT0_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
// SimpleAccountFactory of each EntryPoint as deployed by bundler.devchain (and permissionless' defaults)
const FACTORIES = {
  "0.7": "0x91E60e0613810449d098b0b5Ec8b51A0FE8c8985",
  "0.8": "0x13E9ed32155810FDbd067D4522C492D6f68E5944",
};
const FACTORY_ABI = [{
  type: "function", name: "getAddress", stateMutability: "view",
  inputs: [{ name: "owner", type: "address" }, { name: "salt", type: "uint256" }],
  outputs: [{ name: "", type: "address" }],
}];
const RPC_TIMEOUT_MS = 60_000;
const RECEIPT_TIMEOUT_MS = 60_000;

// ---------------------------------------------------------------------------------------
// arguments

function parseArgs(argv) {
  const out = {
    client: process.env.E2E_CLIENT ?? "all",
    bundler: process.env.BUNDLER_URL,
    node: process.env.NODE_URL,
    paymaster: process.env.PAYMASTER_URL,
    policy: process.env.PAYMASTER_POLICY,
  };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const m = /^--(client|bundler|node|paymaster|policy)(?:=(.*))?$/.exec(arg);
    if (m) out[m[1]] = m[2] ?? argv[++i];
    else positional.push(arg);
  }
  // positional form: BUNDLER_URL NODE_URL [CLIENT]
  if (positional[0]) out.bundler = positional[0];
  if (positional[1]) out.node = positional[1];
  if (positional[2]) out.client = positional[2];
  if (!out.bundler || !out.node) {
    throw new Error("usage: clients.mjs --bundler URL --node URL [--client viem-v08|viem-v09|permissionless-v07|all] "
      + "(or BUNDLER_URL / NODE_URL in the environment)");
  }
  if (!["viem-v08", "viem-v09", "permissionless-v07", "all", ...Object.keys(SPONSORED)].includes(out.client)) {
    throw new Error(`unknown client ${out.client}`);
  }
  out.paymaster = out.paymaster ?? out.bundler.replace(/\/+$/, "") + "/paymaster";
  return out;
}

// ---------------------------------------------------------------------------------------
// reporting

function emit(obj) {
  process.stdout.write(JSON.stringify(obj, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
}

class CheckFailed extends Error {}

function check(name, ok, details = {}) {
  emit({ check: name, ok: Boolean(ok), ...details });
  if (!ok) throw new CheckFailed(`check failed: ${name} ${JSON.stringify(details, (_k, v) => (typeof v === "bigint" ? v.toString() : v))}`);
}

// Recent traffic to the bundler, to show the failing request and the bundler's answer.
const exchanges = [];
const pending = new Map();

function recordingTransport(url) {
  return http(url, {
    timeout: RPC_TIMEOUT_MS,
    retryCount: 0,
    onFetchRequest: async (_request, init) => {
      const entry = { request: safeJson(init?.body), response: null, status: null };
      exchanges.push(entry);
      if (exchanges.length > 20) exchanges.shift();
      // viem sends one request at a time per fetch; match by JSON-RPC id
      const id = entry.request?.id;
      if (id !== undefined) pending.set(id, entry);
    },
    onFetchResponse: async (response) => {
      try {
        const text = await response.clone().text();
        const body = safeJson(text);
        const id = Array.isArray(body) ? body[0]?.id : body?.id;
        const entry = (id !== undefined && pending.get(id)) || exchanges[exchanges.length - 1];
        if (entry) {
          entry.status = response.status;
          entry.response = body;
          if (id !== undefined) pending.delete(id);
        }
      } catch { /* the body is still readable by viem */ }
    },
  });
}

function safeJson(text) {
  if (typeof text !== "string") return text ?? null;
  try { return JSON.parse(text); } catch { return text; }
}

// The JSON-RPC error somewhere down a viem error's cause chain, plus the whole chain's messages.
function describeError(err) {
  const chain = [];
  let rpc = null;
  for (let e = err, depth = 0; e && depth < 12; e = e.cause, depth++) {
    chain.push({ name: e.name, message: e.shortMessage ?? e.message, details: e.details });
    if (rpc === null && typeof e.code === "number") {
      rpc = { code: e.code, message: e.details ?? e.shortMessage ?? e.message, data: e.data };
    }
  }
  const lastError = [...exchanges].reverse().find((x) => x.response && x.response.error);
  return {
    error: err?.shortMessage ?? err?.message ?? String(err),
    rpcError: rpc,
    bundlerError: lastError ? { request: lastError.request, response: lastError.response } : null,
    causes: chain,
    lastBundlerExchanges: exchanges.slice(-4),
  };
}

// ---------------------------------------------------------------------------------------
// shared steps

async function setup(nodeUrl) {
  const probe = createPublicClient({ transport: http(nodeUrl) });
  const chainId = await probe.getChainId();
  const chain = defineChain({
    id: chainId,
    name: `dev-${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [nodeUrl] } },
  });
  const publicClient = createPublicClient({ chain, transport: http(nodeUrl), pollingInterval: 250 });
  const funder = createWalletClient({ chain, transport: http(nodeUrl), account: privateKeyToAccount(ANVIL_ACCOUNT0_KEY) });
  return { chain, publicClient, funder };
}

async function makeAccount(label, publicClient, epAddress, version) {
  const owner = privateKeyToAccount(generatePrivateKey());
  const account = await toSimpleSmartAccount({
    client: publicClient,
    owner,
    entryPoint: { address: epAddress, version },
  });
  const { factory } = await account.getFactoryArgs();
  check(`${label}: default factory is the dev chain's SimpleAccountFactory`,
    factory && getAddress(factory) === getAddress(FACTORIES[version]),
    { factory, expected: FACTORIES[version] });
  const onChain = await publicClient.readContract({
    address: FACTORIES[version], abi: FACTORY_ABI, functionName: "getAddress", args: [owner.address, 0n],
  });
  check(`${label}: counterfactual address matches factory.getAddress`,
    getAddress(onChain) === getAddress(account.address),
    { account: account.address, factoryGetAddress: onChain });
  const code = await publicClient.getCode({ address: account.address });
  check(`${label}: account not yet deployed`, !code || code === "0x", { account: account.address });
  return { owner, account };
}

async function fundAccount(label, publicClient, funder, address) {
  const hash = await funder.sendTransaction({ to: address, value: parseEther("1") });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  const balance = await publicClient.getBalance({ address });
  check(`${label}: funded counterfactual account`, receipt.status === "success" && balance >= parseEther("1"),
    { account: address, balance, tx: hash });
}

async function checkSupported(label, bundlerClient, epAddress) {
  const eps = await bundlerClient.getSupportedEntryPoints();
  check(`${label}: eth_supportedEntryPoints lists the EntryPoint`,
    eps.map((a) => getAddress(a)).includes(getAddress(epAddress)), { supported: eps });
}

// Send one op through `client.sendUserOperation`, wait for its receipt, check it landed.
async function sendAndCheck(label, step, { client, waiter, publicClient, account, target, value, expectDeployed, authorization }) {
  const before = await publicClient.getBalance({ address: target });
  const started = Date.now();
  const hash = await client.sendUserOperation({ calls: [{ to: target, value, data: "0x" }], authorization });
  check(`${label}: ${step}: eth_sendUserOperation returned a hash`, /^0x[0-9a-fA-F]{64}$/.test(hash), { hash });
  const receipt = await waiter.waitForUserOperationReceipt({ hash, timeout: RECEIPT_TIMEOUT_MS, pollingInterval: 250 });
  check(`${label}: ${step}: receipt success`, receipt.success === true,
    { hash, success: receipt.success, reason: receipt.reason, ms: Date.now() - started });
  check(`${label}: ${step}: receipt sender and hash`,
    getAddress(receipt.sender) === getAddress(account.address) && receipt.userOpHash?.toLowerCase() === hash.toLowerCase(),
    { sender: receipt.sender, expected: account.address, userOpHash: receipt.userOpHash });
  check(`${label}: ${step}: receipt transaction mined`, receipt.receipt?.status === "success",
    { transactionHash: receipt.receipt?.transactionHash, status: receipt.receipt?.status,
      blockNumber: receipt.receipt?.blockNumber, actualGasCost: receipt.actualGasCost });
  const after = await publicClient.getBalance({ address: target });
  check(`${label}: ${step}: target balance changed on chain`, after - before === value,
    { target, before, after, expectedDelta: value });
  if (expectDeployed) {
    const code = await publicClient.getCode({ address: account.address });
    check(`${label}: ${step}: account deployed`, code && code !== "0x", { account: account.address });
  }
  return receipt;
}

function randomTarget() {
  return privateKeyToAccount(generatePrivateKey()).address;
}

// ---------------------------------------------------------------------------------------
// 1. viem createBundlerClient, SimpleAccount on EntryPoint v0.8

// a funded account behind viem's createBundlerClient, checked to be served by the bundler
async function viemBundlerClient(label, bundlerUrl, { chain, publicClient, funder }, account, epAddress) {
  await fundAccount(label, publicClient, funder, account.address);
  const bundlerClient = createBundlerClient({
    account,
    client: publicClient,
    chain,
    transport: recordingTransport(bundlerUrl),
    pollingInterval: 250,
  });
  await checkSupported(label, bundlerClient, epAddress);
  return { client: bundlerClient, waiter: bundlerClient, publicClient, account, target: randomTarget() };
}

async function runViem(bundlerUrl, nodeUrl) {
  const label = "viem-v08";
  const env = await setup(nodeUrl);
  const { account } = await makeAccount(label, env.publicClient, entryPoint08Address, "0.8");
  const common = await viemBundlerClient(label, bundlerUrl, env, account, entryPoint08Address);
  await sendAndCheck(label, "op 1 (deploys account, 1 wei)", { ...common, value: 1n, expectDeployed: true });
  await sendAndCheck(label, "op 2 (plain call, 2 wei)", { ...common, value: 2n, expectDeployed: false });
  emit({ check: `${label}: done`, ok: true });
}

// 2. viem createBundlerClient, its own Simple7702Account (EIP-7702) on EntryPoint v0.9, all
//    defaults: the owner signs the authorization for the first op, the bundler sends it as type 4

async function runViem09(bundlerUrl, nodeUrl) {
  const label = "viem-v09";
  const env = await setup(nodeUrl);
  const { chain, publicClient } = env;
  const owner = privateKeyToAccount(generatePrivateKey());
  const account = await toSimple7702SmartAccount({ client: publicClient, owner, entryPoint: "0.9" });
  check(`${label}: the account is the owner's EOA on EntryPoint v0.9`,
    getAddress(account.address) === getAddress(owner.address)
      && getAddress(account.entryPoint.address) === getAddress(entryPoint09Address)
      && account.entryPoint.version === "0.9",
    { account: account.address, entryPoint: account.entryPoint });
  const common = await viemBundlerClient(label, bundlerUrl, env, account, entryPoint09Address);
  // as viem's docs do it: the owner signs the EIP-7702 authorization, the op carries it
  const authorization = await owner.signAuthorization({
    chainId: chain.id,
    contractAddress: account.authorization.address,
    nonce: await publicClient.getTransactionCount({ address: owner.address }),
  });
  await sendAndCheck(label, "op 1 (delegates the EOA, 1 wei)", { ...common, value: 1n, expectDeployed: true, authorization });
  const code = await publicClient.getCode({ address: account.address });
  check(`${label}: the EOA delegates to viem's Simple7702Account for v0.9`,
    code?.toLowerCase() === ("0xef0100" + account.authorization.address.slice(2)).toLowerCase(), { code });
  await sendAndCheck(label, "op 2 (plain call, 2 wei)", { ...common, value: 2n, expectDeployed: false });
  emit({ check: `${label}: done`, ok: true });
}

// 3. permissionless createSmartAccountClient, SimpleAccount on EntryPoint v0.7

async function runPermissionless(bundlerUrl, nodeUrl) {
  const label = "permissionless-v07";
  const { chain, publicClient, funder } = await setup(nodeUrl);
  const { account } = await makeAccount(label, publicClient, entryPoint07Address, "0.7");
  await fundAccount(label, publicClient, funder, account.address);
  const smartAccountClient = createSmartAccountClient({
    account,
    chain,
    client: publicClient,
    bundlerTransport: recordingTransport(bundlerUrl),
    pollingInterval: 250,
    userOperation: {
      // the bundler has no pimlico_getUserOperationGasPrice: take the fees from the node
      estimateFeesPerGas: async () => {
        const fees = await publicClient.estimateFeesPerGas();
        return { maxFeePerGas: fees.maxFeePerGas, maxPriorityFeePerGas: fees.maxPriorityFeePerGas };
      },
    },
  });
  await checkSupported(label, smartAccountClient, entryPoint07Address);
  const target = randomTarget();
  const common = { client: smartAccountClient, waiter: smartAccountClient, publicClient, account, target };
  await sendAndCheck(label, "op 1 (deploys account, 1 wei)", { ...common, value: 1n, expectDeployed: true });
  await sendAndCheck(label, "op 2 (plain call, 2 wei)", { ...common, value: 2n, expectDeployed: false });
  emit({ check: `${label}: done`, ok: true });
}

// 3. Sponsored: an unfunded counterfactual SimpleAccount, gas paid through ERC-7677

const ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";
const SPONSORED = {
  "viem-paymaster-v07": { library: "viem", version: "0.7", entryPoint: entryPoint07Address },
  "viem-paymaster-v08": { library: "viem", version: "0.8", entryPoint: entryPoint08Address },
  "viem-paymaster-v09": { library: "viem", version: "0.9", entryPoint: entryPoint09Address, eip7702: true },
  "permissionless-paymaster-v07": { library: "permissionless", version: "0.7", entryPoint: entryPoint07Address },
  "permissionless-paymaster-v08": { library: "permissionless", version: "0.8", entryPoint: entryPoint08Address },
  "permissionless-paymaster-v09": { library: "permissionless", version: "0.9", entryPoint: entryPoint09Address, eip7702: true },
};

async function runSponsored(label, { bundler, node, paymaster, policy }) {
  const { library, version, entryPoint, eip7702 } = SPONSORED[label];
  const { chain, publicClient } = await setup(node);
  let account;
  let firstAuthorization;
  if (eip7702) {
    // viem's own v0.9 account: the owner's EOA, never funded, delegated by its first op
    const owner = privateKeyToAccount(generatePrivateKey());
    account = await toSimple7702SmartAccount({ client: publicClient, owner, entryPoint: version });
    firstAuthorization = await owner.signAuthorization({
      chainId: chain.id,
      contractAddress: account.authorization.address,
      nonce: await publicClient.getTransactionCount({ address: owner.address }),
    });
  } else {
    ({ account } = await makeAccount(label, publicClient, entryPoint, version));
  }
  const paymasterContext = policy ? { policyId: policy } : undefined;
  let client;
  if (library === "viem") {
    // the pm_* methods on their own path, as an operator may serve them apart
    const paymasterClient = createPaymasterClient({ transport: recordingTransport(paymaster) });
    client = createBundlerClient({
      account, client: publicClient, chain, transport: recordingTransport(bundler), pollingInterval: 250,
      paymaster: paymasterClient, paymasterContext,
    });
  } else {
    // permissionless' `paymaster:` option, with the bundler URL itself serving pm_*
    const paymasterClient = createPaymasterClient({ transport: recordingTransport(bundler) });
    client = createSmartAccountClient({
      account, chain, client: publicClient, bundlerTransport: recordingTransport(bundler), pollingInterval: 250,
      paymaster: paymasterClient, paymasterContext,
      userOperation: {
        estimateFeesPerGas: async () => {
          const fees = await publicClient.estimateFeesPerGas();
          return { maxFeePerGas: fees.maxFeePerGas, maxPriorityFeePerGas: fees.maxPriorityFeePerGas };
        },
      },
    });
  }
  const target = randomTarget();
  const common = { client, waiter: client, publicClient, account, target, value: 0n };
  for (const [step, expectDeployed] of [["op 1 (deploys account, sponsored)", true], ["op 2 (sponsored)", false]]) {
    const authorization = expectDeployed ? firstAuthorization : undefined;
    const receipt = await sendAndCheck(label, step, { ...common, expectDeployed, authorization });
    check(`${label}: ${step}: paid by a paymaster`, receipt.paymaster && getAddress(receipt.paymaster) !== ZERO_ADDRESS,
      { paymaster: receipt.paymaster, actualGasCost: receipt.actualGasCost });
    emit({ check: `${label}: ${step}: sponsored`, ok: true, paymaster: receipt.paymaster,
           actualGasCost: receipt.actualGasCost, userOpHash: receipt.userOpHash });
  }
  const balance = await publicClient.getBalance({ address: account.address });
  check(`${label}: the account was never funded`, balance === 0n, { account: account.address, balance });
  emit({ check: `${label}: done`, ok: true });
}

// ---------------------------------------------------------------------------------------

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    emit({ check: "arguments", ok: false, error: err.message });
    process.exit(2);
  }
  const runs = [];
  if (args.client === "viem-v08" || args.client === "all") runs.push(["viem-v08", runViem]);
  if (args.client === "viem-v09" || args.client === "all") runs.push(["viem-v09", runViem09]);
  if (args.client === "permissionless-v07" || args.client === "all") runs.push(["permissionless-v07", runPermissionless]);
  if (SPONSORED[args.client]) runs.push([args.client, () => runSponsored(args.client, args)]);
  let failed = false;
  for (const [name, run] of runs) {
    exchanges.length = 0;
    try {
      await run(args.bundler, args.node);
    } catch (err) {
      failed = true;
      if (!(err instanceof CheckFailed)) emit({ check: `${name}: error`, ok: false, ...describeError(err) });
      else emit({ check: `${name}: failed`, ok: false, error: err.message, lastBundlerExchanges: exchanges.slice(-4) });
    }
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  emit({ check: "fatal", ok: false, ...describeError(err) });
  process.exit(1);
});
