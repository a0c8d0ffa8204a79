// ERC-1271 / ERC-7739 on SessionAccount through the SDK: the account's signMessage / signTypedData
// (owner) verified by viem's verifyMessage / verifyTypedData against accounts on a real
// `bundler dev` chain (isValidSignature through viem's ERC-6492 validator call); the same
// signature is refused by a second account of the same owner; a session key's signatures are
// refused even while its session is active.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  createWalletClient, hashMessage, hashTypedData, http, parseEther, zeroAddress,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createSmartAccountClient } from "permissionless/clients";
import {
  callPolicy, sessionAccountAbi, sessionAccountDomain, sessionAccountFactoryAbi, sessionSpec, signErc1271Message,
  signErc1271TypedData, toSessionAccount,
} from "../dist/index.js";
import { devClients, startDevBundler, waitFor } from "./devchain.mjs";

let dev, chain, publicClient, funder;

before(async () => {
  dev = await startDevBundler();
  ({ chain, publicClient, funder } = devClients(dev));
});

after(async () => { await dev?.stop(); });

const mined = async (hash) => {
  const receipt = await publicClient.waitForTransactionReceipt({ hash, timeout: 60_000 });
  assert.equal(receipt.status, "success");
  return receipt;
};

async function deployClone(version, owner, salt) {
  const factory = dev.entryPoints[version].sessionAccountFactory;
  await mined(await funder.writeContract({ address: factory, abi: sessionAccountFactoryAbi, functionName: "createAccount", args: [owner, salt] }));
  const account = await publicClient.readContract({ address: factory, abi: sessionAccountFactoryAbi, functionName: "getAddress", args: [owner, salt] });
  await waitFor(async () => (await publicClient.getCode({ address: account }))?.length > 2, `code at ${account}`);
  return account;
}

// Permit2's PermitSingle: its nested PermitDetails sorts before it (ERC-7739 explicit mode)
const permit = (spender) => ({
  domain: { name: "Permit2", chainId: dev.chainId, verifyingContract: "0x000000000022D473030F116dDEE9F6B43aC78BA3" },
  types: {
    PermitDetails: [
      { name: "token", type: "address" }, { name: "amount", type: "uint160" },
      { name: "expiration", type: "uint48" }, { name: "nonce", type: "uint48" },
    ],
    PermitSingle: [
      { name: "details", type: "PermitDetails" }, { name: "spender", type: "address" }, { name: "sigDeadline", type: "uint256" },
    ],
  },
  primaryType: "PermitSingle",
  message: {
    details: { token: dev.token, amount: 10n ** 18n, expiration: 2_000_000_000, nonce: 0 },
    spender, sigDeadline: 2_000_000_000n,
  },
});

// a struct that sorts first among its types (implicit mode)
const order = {
  domain: { name: "Exchange", version: "2", chainId: 0, verifyingContract: "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC" },
  types: {
    Order: [{ name: "maker", type: "address" }, { name: "legs", type: "Trade[]" }],
    Trade: [{ name: "amount", type: "uint256" }, { name: "note", type: "string" }],
  },
  primaryType: "Order",
  message: { maker: "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB", legs: [{ amount: 5n, note: "first" }, { amount: 7n, note: "second" }] },
};

describe("ERC-1271 isValidSignature (ERC-7739) with the SDK and viem", () => {
  test("owner signatures verify on their account only; a session key's never; the account declares ERC-7739 and ERC-5267", async () => {
    order.domain.chainId = dev.chainId;
    const owner = privateKeyToAccount(generatePrivateKey());
    const [a, b] = [await deployClone("0.7", owner.address, 0n), await deployClone("0.7", owner.address, 1n)];
    const factory = dev.entryPoints["0.7"].sessionAccountFactory;
    const accountA = await toSessionAccount({ client: publicClient, entryPoint: "0.7", owner, factory, salt: 0n });
    const accountB = await toSessionAccount({ client: publicClient, entryPoint: "0.7", owner, factory, salt: 1n });
    assert.equal(accountA.address, a);
    assert.equal(accountB.address, b);

    const message = "Sign in to example.org, nonce 42";
    const messageSig = await accountA.signMessage({ message });
    assert.equal(await publicClient.verifyMessage({ address: a, message, signature: messageSig }), true);
    assert.equal(await publicClient.verifyMessage({ address: b, message, signature: messageSig }), false, "replayed on the owner's other account");
    assert.equal(await publicClient.verifyMessage({ address: a, message: "something else", signature: messageSig }), false);
    const messageSigB = await accountB.signMessage({ message });
    assert.equal(await publicClient.verifyMessage({ address: b, message, signature: messageSigB }), true);
    assert.equal(await publicClient.verifyMessage({ address: a, message, signature: messageSigB }), false);

    for (const typed of [permit(owner.address), order]) {
      const sig = await accountA.signTypedData(typed);
      assert.equal(await publicClient.verifyTypedData({ address: a, ...typed, signature: sig }), true, typed.primaryType);
      assert.equal(await publicClient.verifyTypedData({ address: b, ...typed, signature: sig }), false, `${typed.primaryType} replayed`);
      const changed = { ...typed, message: { ...typed.message, spender: zeroAddress, maker: zeroAddress } };
      assert.equal(await publicClient.verifyTypedData({ address: a, ...changed, signature: sig }), false);
    }

    // through permissionless' smart account client (its signMessage / signTypedData use the account's)
    const smartClient = createSmartAccountClient({ account: accountA, chain, client: publicClient, bundlerTransport: http(dev.bundlerUrl) });
    const viaClient = await smartClient.signMessage({ message });
    assert.equal(await publicClient.verifyMessage({ address: a, message, signature: viaClient }), true);
    const typedViaClient = await smartClient.signTypedData(permit(owner.address));
    assert.equal(await publicClient.verifyTypedData({ address: a, ...permit(owner.address), signature: typedViaClient }), true);

    // a bare ECDSA signature of the hash (no nesting in the account's domain) is never accepted
    const rawOwner = await owner.sign({ hash: hashMessage(message) });
    assert.equal(await isValid(a, hashMessage(message), rawOwner), false);

    // a session key with an active session on the account cannot sign for it
    await publicClient.request({ method: "anvil_setBalance", params: [owner.address, `0x${parseEther("1").toString(16)}`] });
    const sessionKey = privateKeyToAccount(generatePrivateKey());
    const spec = sessionSpec({ signer: sessionKey.address, policies: [callPolicy({ target: dev.token })] });
    const ownerWallet = createWalletClient({ chain, transport: http(dev.nodeUrl), account: owner });
    await mined(await ownerWallet.writeContract({ address: a, abi: sessionAccountAbi, functionName: "grantSession", args: [spec] }));
    const info = await publicClient.readContract({ address: a, abi: sessionAccountAbi, functionName: "getSession", args: [sessionKey.address] });
    assert.equal(info.status, 1);
    const sessionMessageSig = await signErc1271Message({ signer: sessionKey, account: a, chainId: dev.chainId, message });
    assert.equal(await publicClient.verifyMessage({ address: a, message, signature: sessionMessageSig }), false);
    const sessionTypedSig = await signErc1271TypedData({ signer: sessionKey, account: a, chainId: dev.chainId, typedData: order });
    assert.equal(await publicClient.verifyTypedData({ address: a, ...order, signature: sessionTypedSig }), false);
    assert.equal(await isValid(a, hashMessage(message), await sessionKey.sign({ hash: hashMessage(message) })), false);
    const sessionAccount = await toSessionAccount({
      client: publicClient, entryPoint: "0.7", owner: owner.address, address: a, session: { signer: sessionKey, spec },
    });
    await assert.rejects(sessionAccount.signMessage({ message }), /session key cannot sign/);
    await assert.rejects(sessionAccount.signTypedData(order), /session key cannot sign/);
    // the SDK's helper with the owner key gives what the account gives
    assert.equal(await signErc1271Message({ signer: owner, account: a, chainId: dev.chainId, message }), messageSig);

    // ERC-7739's guard: a contents type named in lower case (as an atomic type would be) is
    // refused even when the owner signed it
    const lower = { ...order, types: { order: order.types.Order, Trade: order.types.Trade }, primaryType: "order" };
    const lowerSig = await signErc1271TypedData({ signer: owner, account: a, chainId: dev.chainId, typedData: lower });
    assert.equal(await isValid(a, hashTypedData(lower), lowerSig), false);
    const upper = { ...order, types: { Ordre: order.types.Order, Trade: order.types.Trade }, primaryType: "Ordre" };
    const upperSig = await signErc1271TypedData({ signer: owner, account: a, chainId: dev.chainId, typedData: upper });
    assert.equal(await isValid(a, hashTypedData(upper), upperSig), true);

    assert.equal(await publicClient.readContract({
      address: a, abi: sessionAccountAbi, functionName: "isValidSignature", args: [`0x${"7739".repeat(16)}`, "0x"],
    }), "0x77390001");
    const [fields, name, version, chainId, verifyingContract, salt, extensions] = await publicClient.readContract({
      address: a, abi: sessionAccountAbi, functionName: "eip712Domain",
    });
    const domain = sessionAccountDomain(a, dev.chainId);
    assert.deepEqual([fields, name, version, Number(chainId), verifyingContract, salt, extensions],
      ["0x0f", domain.name, domain.version, domain.chainId, a, `0x${"00".repeat(32)}`, []]);
  });

  test("a counterfactual account signs through ERC-6492 (viem's deployless check); an EIP-7702 EOA signs for itself, not for its clone", async () => {
    const owner = privateKeyToAccount(generatePrivateKey());
    const v = dev.entryPoints["0.8"];
    const counterfactual = await toSessionAccount({ client: publicClient, entryPoint: "0.8", owner, factory: v.sessionAccountFactory, salt: 5n });
    assert.equal(await publicClient.getCode({ address: counterfactual.address }), undefined);
    const message = "undeployed";
    const sig = await counterfactual.signMessage({ message });
    assert.ok(sig.endsWith("6492".repeat(16)), "ERC-6492 wrapped");
    assert.equal(await publicClient.verifyMessage({ address: counterfactual.address, message, signature: sig }), true);

    // the owner EOA delegates to SessionAccount (type-4 transaction sent by another account)
    const authorization = await owner.signAuthorization({ address: v.sessionAccount, chainId: dev.chainId, nonce: 0 });
    await mined(await funder.sendTransaction({ to: owner.address, authorizationList: [authorization], data: "0x" }));
    const eoa = await toSessionAccount({ client: publicClient, entryPoint: "0.8", owner, eip7702: { implementation: v.sessionAccount } });
    const clone = await deployClone("0.8", owner.address, 0n);
    const eoaSig = await eoa.signMessage({ message });
    assert.equal(await publicClient.verifyMessage({ address: owner.address, message, signature: eoaSig }), true);
    assert.equal(await publicClient.verifyMessage({ address: clone, message, signature: eoaSig }), false);
    const cloneAccount = await toSessionAccount({ client: publicClient, entryPoint: "0.8", owner, factory: v.sessionAccountFactory, salt: 0n });
    const cloneSig = await cloneAccount.signTypedData(permit(owner.address));
    assert.equal(await publicClient.verifyTypedData({ address: clone, ...permit(owner.address), signature: cloneSig }), true);
    assert.equal(await publicClient.verifyTypedData({ address: owner.address, ...permit(owner.address), signature: cloneSig }), false);
  });
});

function isValid(address, hash, signature) {
  return publicClient.readContract({ address, abi: sessionAccountAbi, functionName: "isValidSignature", args: [hash, signature] })
    .then((r) => r === "0x1626ba7e");
}
