// The TypeScript SDK end to end: a real `bundler dev` (anvil + EntryPoints + SessionAccount) started
// for this file; viem's createBundlerClient and permissionless' createSmartAccountClient drive
// toSessionAccount; every check reads the chain or the bundler's answers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  createWalletClient, encodeFunctionData, getAddress, http, parseAbi, parseEther,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createBundlerClient } from "viem/account-abstraction";
import { createSmartAccountClient } from "permissionless/clients";
import { createPimlicoClient } from "permissionless/clients/pimlico";
import {
  allowance, callPolicy, decodeSignature, eip7702Authorization, deserializeSession, encodeSpec, decodeSpec, enableDigest, enableSession,
  erc20TransferPolicy, eq, getSession, grantPermissions, grantSessionCall, lifetime, lte, parseSessionRefusal,
  readSession, revokeSessionCall, serializeSession, sessionAccountAbi, sessionAccountParameters, sessionActions,
  sessionSpec, specHash, toSessionAccount, transferPolicy,
} from "../dist/index.js";
import { devClients, startDevBundler, waitFor } from "./devchain.mjs";

const tokenAbi = parseAbi([
  "function mint(address to, uint256 amount)",
  "function transfer(address to, uint256 amount) returns (bool)",
  "function balanceOf(address) view returns (uint256)",
]);

let dev, chain, publicClient, funder;

before(async () => {
  dev = await startDevBundler();
  ({ chain, publicClient, funder } = devClients(dev));
});

after(async () => { await dev?.stop(); });

const now = async () => Number((await publicClient.getBlock()).timestamp);
const fund = (address, wei = parseEther("1")) => publicClient.request({ method: "anvil_setBalance", params: [address, `0x${wei.toString(16)}`] });
const bundlerFor = (account) => createBundlerClient({ client: publicClient, transport: http(dev.bundlerUrl), account, pollingInterval: 100 });
const balanceOf = (who) => publicClient.readContract({ address: dev.token, abi: tokenAbi, functionName: "balanceOf", args: [who] });
const mint = (to, amount) => ({ to: dev.token, data: encodeFunctionData({ abi: tokenAbi, functionName: "mint", args: [to, amount] }) });

async function sendAndWait(client, calls) {
  const hash = await client.sendUserOperation({ calls });
  const receipt = await client.waitForUserOperationReceipt({ hash, timeout: 60_000 });
  return receipt;
}

async function refusalOf(promise) {
  try {
    await promise;
  } catch (e) {
    const r = parseSessionRefusal(e);
    assert.ok(r, `not a session refusal: ${e?.message}`);
    return r;
  }
  assert.fail("the op was accepted");
}

function mintSpec(signer, validUntil) {
  return sessionSpec({
    signer, validUntil, period: 86_400,
    policies: [callPolicy({ target: dev.token, function: tokenAbi[0], args: { amount: lte(100n, allowance(150n)) } })],
  });
}

describe("encoding against the contract", () => {
  test("specHash, enable digest and the ABI tuple agree with SessionAccount", async () => {
    const spec = sessionSpec({
      signer: privateKeyToAccount(generatePrivateKey()).address, validAfter: 5, validUntil: 10_000, period: 600, usageLimit: 7,
      policies: [
        erc20TransferPolicy({ token: dev.token, to: dev.entryPoints["0.7"].entryPoint, maxPerTransfer: 10n, limit: allowance(30n) }),
        transferPolicy({ maxValuePerUse: 5n, valueLimit: lifetime(9n) }),
      ],
    });
    const impl = dev.entryPoints["0.7"].sessionAccount;
    const onChain = await publicClient.readContract({ address: impl, abi: sessionAccountAbi, functionName: "specHash", args: [spec] });
    assert.equal(onChain, specHash(spec));
    assert.deepEqual(decodeSpec(encodeSpec(spec)), spec);
    const digest = await publicClient.readContract({ address: impl, abi: sessionAccountAbi, functionName: "enableDigest", args: [spec, 3n] });
    assert.equal(digest, enableDigest({ spec, nonce: 3n, account: impl, chainId: dev.chainId }));
    // an argument named by the ABI lands on its word: transfer(to, amount) -> 0 and 1
    assert.deepEqual(spec.callPolicies[0].constraints.map((c) => c.index), [0, 1]);
  });
});

describe("toSessionAccount with viem createBundlerClient", () => {
  test("v0.7: owner deploys and grants, the session key mints within its allowance, the crossing op is refused with numbers, the owner revokes", async () => {
    const v = dev.entryPoints["0.7"];
    const owner = privateKeyToAccount(generatePrivateKey());
    const ownerAccount = await toSessionAccount({ client: publicClient, entryPoint: "0.7", owner, factory: v.sessionAccountFactory });
    await fund(ownerAccount.address);
    const sessionKey = privateKeyToAccount(generatePrivateKey());
    const spec = mintSpec(sessionKey.address, (await now()) + 3600);

    const granted = await sendAndWait(bundlerFor(ownerAccount), [grantSessionCall(ownerAccount.address, spec)]);
    assert.equal(granted.success, true);
    const onChain = await readSession(publicClient, ownerAccount.address, sessionKey.address);
    assert.equal(onChain.status, "active");
    assert.deepEqual(onChain.spec, spec);

    const sessionAccount = await toSessionAccount({
      client: publicClient, entryPoint: "0.7", owner: owner.address, address: ownerAccount.address,
      session: { signer: sessionKey, spec },
    });
    const client = bundlerFor(sessionAccount);
    const minted = await sendAndWait(client, [mint(sessionAccount.address, 100n)]);
    assert.equal(minted.success, true);
    assert.equal(await balanceOf(sessionAccount.address), 100n);
    const op = await client.getUserOperation({ hash: minted.userOpHash });
    const sig = decodeSignature(op.userOperation.signature);
    assert.equal(sig.mode, "session");
    assert.equal(sig.signer, sessionKey.address);

    const refusal = await refusalOf(client.sendUserOperation({ calls: [mint(sessionAccount.address, 100n)] }));
    assert.equal(refusal.rule, "SessionCumulativeLimitExceeded");
    assert.equal(refusal.limit, 150n);
    assert.equal(refusal.used, 100n);
    assert.equal(refusal.requested, 100n);
    assert.equal(refusal.remaining, 50n);
    assert.equal(refusal.code, -32500);

    const view = await client.extend(sessionActions).getSession({ account: sessionAccount.address, sessionKey: sessionKey.address });
    assert.equal(view.status, "active");
    assert.deepEqual(view.spec, spec);
    assert.equal(view.limits[0].used, 100n);
    assert.equal(view.limits[0].remaining, 50n);

    const revoked = await sendAndWait(bundlerFor(ownerAccount), [revokeSessionCall(ownerAccount.address, sessionKey.address)]);
    assert.equal(revoked.success, true);
    assert.equal((await readSession(publicClient, ownerAccount.address, sessionKey.address)).status, "revoked");
    const afterRevoke = await refusalOf(client.sendUserOperation({ calls: [mint(sessionAccount.address, 1n)] }));
    assert.equal(afterRevoke.rule, "SessionIsRevoked");
  });

  for (const version of ["0.8", "0.9"]) {
    test(`v${version} enable mode: the owner signs typed data once, the session key's first op deploys, grants and mints; the next op is plain session mode`, async () => {
      const v = dev.entryPoints[version];
      const owner = privateKeyToAccount(generatePrivateKey());
      const wallet = createWalletClient({ chain, transport: http(dev.nodeUrl), account: owner });
      const ownerView = await toSessionAccount({ client: publicClient, entryPoint: version, owner, factory: v.sessionAccountFactory });
      await fund(ownerView.address);
      const sessionKey = privateKeyToAccount(generatePrivateKey());
      const spec = mintSpec(sessionKey.address, (await now()) + 3600);
      const enable = await enableSession({ client: publicClient, owner: wallet, account: ownerView.address, spec });
      assert.equal(enable.nonce, 0n);

      const sessionAccount = await toSessionAccount({
        client: publicClient, entryPoint: version, owner: owner.address, factory: v.sessionAccountFactory,
        session: { signer: sessionKey, spec, enable },
      });
      assert.equal(sessionAccount.address, ownerView.address);
      const client = bundlerFor(sessionAccount);
      const first = await sendAndWait(client, [mint(sessionAccount.address, 60n)]);
      assert.equal(first.success, true);
      const firstOp = await client.getUserOperation({ hash: first.userOpHash });
      assert.equal(decodeSignature(firstOp.userOperation.signature).mode, "enable");
      // the owner's typed-data signature is over exactly the account's enableDigest
      const digest = await publicClient.readContract({ address: sessionAccount.address, abi: sessionAccountAbi, functionName: "enableDigest", args: [spec, 0n] });
      assert.equal(digest, enableDigest({ spec, nonce: 0n, account: sessionAccount.address, chainId: dev.chainId }));

      const second = await sendAndWait(client, [mint(sessionAccount.address, 60n)]);
      assert.equal(second.success, true);
      const secondOp = await client.getUserOperation({ hash: second.userOpHash });
      assert.equal(decodeSignature(secondOp.userOperation.signature).mode, "session");
      assert.equal(await balanceOf(sessionAccount.address), 120n);
    });
  }

  for (const version of ["0.8", "0.9"]) {
    test(`EIP-7702 on v${version}: the EOA's first owner op carries its authorization and grants; the session key sends ETH within its transfer policy`, async () => {
      const v = dev.entryPoints[version];
      const eoa = privateKeyToAccount(generatePrivateKey());
      await fund(eoa.address);
      const ownerAccount = await toSessionAccount({ client: publicClient, entryPoint: version, owner: eoa, eip7702: { implementation: v.sessionAccount } });
      assert.equal(ownerAccount.address, eoa.address);
      const sessionKey = privateKeyToAccount(generatePrivateKey());
      const recipient = privateKeyToAccount(generatePrivateKey()).address;
      const spec = sessionSpec({
        signer: sessionKey.address, validUntil: (await now()) + 600,
        policies: [transferPolicy({ target: recipient, maxValuePerUse: parseEther("0.01"), valueLimit: lifetime(parseEther("0.015")) })],
      });
      const authorization = await eip7702Authorization(ownerAccount, eoa);
      assert.ok(authorization, "a fresh EOA needs an authorization");
      const ownerClient = bundlerFor(ownerAccount);
      const grantHash = await ownerClient.sendUserOperation({ calls: [grantSessionCall(eoa.address, spec)], authorization });
      const granted = await ownerClient.waitForUserOperationReceipt({ hash: grantHash, timeout: 60_000 });
      assert.equal(granted.success, true);
      assert.equal(await eip7702Authorization(ownerAccount, eoa), undefined);
      const code = await publicClient.getCode({ address: eoa.address });
      assert.equal(code.toLowerCase(), `0xef0100${v.sessionAccount.slice(2).toLowerCase()}`);

      const sessionAccount = await toSessionAccount({
        client: publicClient, entryPoint: version, owner: eoa.address, eip7702: { implementation: v.sessionAccount },
        session: { signer: sessionKey, spec },
      });
      const client = bundlerFor(sessionAccount);
      const sent = await sendAndWait(client, [{ to: recipient, value: parseEther("0.01") }]);
      assert.equal(sent.success, true);
      assert.equal(await publicClient.getBalance({ address: recipient }), parseEther("0.01"));
      const refusal = await refusalOf(client.sendUserOperation({ calls: [{ to: recipient, value: parseEther("0.01") }] }));
      assert.equal(refusal.rule, "SessionCumulativeLimitExceeded");
      assert.equal(refusal.remaining, parseEther("0.005"));
    });
  }
});

describe("permissionless createSmartAccountClient", () => {
  for (const version of ["0.7", "0.9"]) {
    test(`v${version}: owner mode sends a transaction; a session account built from a serialized grant mints`, async () => {
      const v = dev.entryPoints[version];
      const owner = privateKeyToAccount(generatePrivateKey());
      const ownerAccount = await toSessionAccount({ client: publicClient, entryPoint: version, owner, factory: v.sessionAccountFactory });
      await fund(ownerAccount.address);
      // permissionless' documented set-up: fees from the bundler's pimlico_getUserOperationGasPrice
      const pimlico = createPimlicoClient({ transport: http(dev.bundlerUrl), chain });
      const gasPrice = await pimlico.getUserOperationGasPrice();
      assert.ok(gasPrice.fast.maxPriorityFeePerGas > 0n && gasPrice.fast.maxFeePerGas >= gasPrice.fast.maxPriorityFeePerGas);
      let priced = 0;
      const smartClient = createSmartAccountClient({
        account: ownerAccount, chain, client: publicClient, bundlerTransport: http(dev.bundlerUrl), pollingInterval: 100,
        userOperation: { estimateFeesPerGas: async () => { priced += 1; return (await pimlico.getUserOperationGasPrice()).fast; } },
      });
      const recipient = privateKeyToAccount(generatePrivateKey()).address;
      const txHash = await smartClient.sendTransaction({ to: recipient, value: 12345n });
      assert.match(txHash, /^0x[0-9a-f]{64}$/);
      assert.equal(await publicClient.getBalance({ address: recipient }), 12345n);
      assert.ok(priced >= 1, "the smart account client priced its op through the bundler");

      // the app grants (enable mode) and hands one string to its backend
      const sessionKey = privateKeyToAccount(generatePrivateKey());
      const spec = mintSpec(sessionKey.address, (await now()) + 3600);
      const enable = await enableSession({ client: publicClient, owner, account: ownerAccount.address, spec });
      const text = serializeSession({
        chainId: dev.chainId, entryPoint: version, account: ownerAccount.address, owner: owner.address,
        factory: v.sessionAccountFactory, salt: 0n, spec, enable,
      });
      assert.equal(typeof text, "string");
      const grant = deserializeSession(text);
      assert.deepEqual(grant.spec, spec);
      assert.equal(grant.enable.nonce, enable.nonce);

      const backendAccount = await toSessionAccount({ client: publicClient, ...sessionAccountParameters(grant, sessionKey) });
      const backendClient = createSmartAccountClient({
        account: backendAccount, chain, client: publicClient, bundlerTransport: http(dev.bundlerUrl), pollingInterval: 100,
      });
      await backendClient.sendTransaction({ calls: [mint(backendAccount.address, 42n)] });
      assert.equal(await balanceOf(backendAccount.address), 42n);
    });
  }
});

describe("ERC-7715 grantPermissions", () => {
  test("a request with an ERC-20 recurring allowance, a contract call, a window and a call limit becomes a working session", async () => {
    const v = dev.entryPoints["0.8"];
    const owner = privateKeyToAccount(generatePrivateKey());
    const account = await toSessionAccount({ client: publicClient, entryPoint: "0.8", owner, factory: v.sessionAccountFactory });
    await fund(account.address);
    // the account must hold tokens to transfer: mint to it directly (anyone may mint)
    await publicClient.waitForTransactionReceipt({ hash: await funder.writeContract({ address: dev.token, abi: tokenAbi, functionName: "mint", args: [account.address, 1000n] }) });
    const backendKey = privateKeyToAccount(generatePrivateKey());
    const dex = privateKeyToAccount(generatePrivateKey()).address;
    const t = await now();
    const response = await grantPermissions({
      account, owner,
      request: {
        chainId: `0x${dev.chainId.toString(16)}`, address: account.address, expiry: t + 3600,
        signer: { type: "account", data: { address: backendKey.address } },
        permissions: [
          { type: "erc20-recurring-allowance", data: { address: dev.token, allowance: "0x64", start: t - 10, period: 86400 } },
          { type: "contract-call", data: { address: dev.token, functions: [{ signature: "mint(address,uint256)" }] } },
        ],
        policies: [{ type: "call-limit", data: { count: 2 } }],
      },
    });
    assert.equal(response.spec.usageLimit, 2);
    assert.equal(response.spec.validAfter, t - 10);
    assert.equal(response.spec.validUntil, t + 3600);
    assert.equal(response.spec.period, 86400);
    assert.equal(getAddress(response.spec.callPolicies[0].target), getAddress(dev.token));

    const grant = deserializeSession(response.permissionsContext);
    const backend = await toSessionAccount({ client: publicClient, ...sessionAccountParameters(grant, backendKey) });
    const client = bundlerFor(backend);
    const transfer = (amount) => ({ to: dev.token, data: encodeFunctionData({ abi: tokenAbi, functionName: "transfer", args: [dex, amount] }) });
    assert.equal((await sendAndWait(client, [transfer(70n)])).success, true);
    const crossing = await refusalOf(client.sendUserOperation({ calls: [transfer(40n)] }));
    assert.equal(crossing.rule, "SessionCumulativeLimitExceeded");
    assert.equal(crossing.remaining, 30n);
    assert.equal((await sendAndWait(client, [mint(backend.address, 1n)])).success, true);
    const third = await refusalOf(client.sendUserOperation({ calls: [mint(backend.address, 1n)] }));
    assert.equal(third.rule, "SessionUsageLimitReached");
    assert.equal(await balanceOf(dex), 70n);
  });
});
