// The relay client end to end against a real `bundler dev` (relay on by default): a backend
// registers, the owner grants it access by signing the EIP-712 enable data the relay returns,
// the backend mints through the relay, a refusal carries the RPC's session data, then the
// backend retires.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { encodeFunctionData, parseAbi } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createRelayClient, RelayError, relayRequestMessage, sessionAccountFactoryAbi, verifyRelayWebhook } from "../dist/index.js";
import { devClients, startDevBundler } from "./devchain.mjs";

const tokenAbi = parseAbi(["function mint(address to, uint256 amount)", "function balanceOf(address) view returns (uint256)"]);
let dev, publicClient, funder;

before(async () => {
  dev = await startDevBundler(["--log-level", "info"]);
  ({ publicClient, funder } = devClients(dev));
});

after(async () => { await dev?.stop(); });

async function deployedAccount(owner) {
  const factory = dev.entryPoints["0.7"].sessionAccountFactory;
  const hash = await funder.writeContract({ address: factory, abi: sessionAccountFactoryAbi, functionName: "createAccount", args: [owner.address, 0n] });
  await publicClient.waitForTransactionReceipt({ hash });
  const account = await publicClient.readContract({ address: factory, abi: sessionAccountFactoryAbi, functionName: "getAddress", args: [owner.address, 0n] });
  await publicClient.request({ method: "anvil_setBalance", params: [account, "0x8ac7230489e80000"] });
  return account;
}

test("a backend mints for a user through the relay, within the grant the owner signed", async () => {
  const owner = privateKeyToAccount(generatePrivateKey());
  const account = await deployedAccount(owner);
  const backend = createRelayClient({ url: dev.bundlerUrl, signer: privateKeyToAccount(generatePrivateKey()) });
  const cred = await backend.register({ name: "ts minter" });
  assert.match(cred.credentialId, /^cred_/);

  const ownerClient = createRelayClient({ url: dev.bundlerUrl, signer: owner, ownerAccount: account });
  const grant = await ownerClient.prepareGrant({ account, credentialId: cred.credentialId,
    permissions: { anyTarget: { maxValuePerUse: 0 }, expiresIn: 3600 } });
  assert.equal(grant.status, "prepared");
  // the typed data the relay returns is what a wallet signs: same signature as over the digest
  const viaTypedData = await owner.signTypedData(grant.enable.typedData);
  const viaDigest = await owner.sign({ hash: grant.enable.digest });
  assert.equal(viaTypedData, viaDigest);
  assert.equal((await ownerClient.activate(grant.grantId, viaTypedData)).status, "authorized");

  const user = privateKeyToAccount(generatePrivateKey()).address;
  const data = encodeFunctionData({ abi: tokenAbi, functionName: "mint", args: [user, 42n] });
  const call = await backend.execute({ account, idempotencyKey: "ts-1", calls: [{ to: dev.token, data }] });
  assert.equal(call.status, "pending");
  const done = await backend.waitForCall(call.callId).catch((e) => { throw new Error(`${e.message}\n${dev.log()}`); });
  assert.equal(done.status, "mined");
  assert.equal(done.receipt.success, true);
  assert.equal(await publicClient.readContract({ address: dev.token, abi: tokenAbi, functionName: "balanceOf", args: [user] }), 42n);

  await assert.rejects(backend.execute({ account, idempotencyKey: "ts-2", calls: [{ to: dev.token, value: "0x1", data }] }),
    (e) => e instanceof RelayError && e.status === 422 && e.code === -32500 && e.data.rule === "SessionValueExceedsPerUse");

  assert.equal((await backend.retire()).status, "retired");
  await assert.rejects(backend.credential(), (e) => e instanceof RelayError && e.status === 401);
});

test("webhook signatures verify against the relay's signer, and only those", async () => {
  const relayKey = privateKeyToAccount(generatePrivateKey());
  const body = JSON.stringify({ type: "call.mined" });
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = "0123456789abcdef0123";
  const signature = await relayKey.signMessage({ message: relayRequestMessage("POST", "/hook", timestamp, nonce, body) });
  const headers = { "X-Relay-Timestamp": timestamp, "X-Relay-Nonce": nonce, "X-Relay-Signature": signature };
  assert.equal(await verifyRelayWebhook({ webhookSigner: relayKey.address, path: "/hook", body, headers }), true);
  assert.equal(await verifyRelayWebhook({ webhookSigner: relayKey.address, path: "/hook", body: body + " ", headers }), false);
  const other = privateKeyToAccount(generatePrivateKey()).address;
  assert.equal(await verifyRelayWebhook({ webhookSigner: other, path: "/hook", body, headers }), false);
});
