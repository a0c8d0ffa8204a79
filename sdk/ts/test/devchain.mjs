// Starts `bundler dev` (anvil + EntryPoints + SessionAccount contracts + the bundler) on ports
// the OS picks (--port 0 --node-port 0) for a test file, from this checkout's Python sources, and reads the addresses it prints.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createPublicClient, createWalletClient, defineChain, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const START_TIMEOUT_MS = 180_000;

function python() {
  if (process.env.BUNDLER_PYTHON) return process.env.BUNDLER_PYTHON;
  const venv = path.join(REPO, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

/** { bundlerUrl, nodeUrl, chainId, entryPoints: {"0.7": {entryPoint, sessionAccount, sessionAccountFactory}}, token, stop() } */
export async function startDevBundler(extraArgs = []) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BUNDLER_")));
  env.PYTHONPATH = [path.join(REPO, "src"), path.join(REPO, "sdk", "python"), process.env.PYTHONPATH].filter(Boolean).join(path.delimiter);
  const child = spawn(python(), ["-m", "bundler.cli", "dev", "--port", "0", "--node-port", "0",
    "--log-level", "warning", ...extraArgs], { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => { err = (err + d).slice(-20000); });
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bundler dev did not start in ${START_TIMEOUT_MS} ms\n${out}\n${err}`)), START_TIMEOUT_MS);
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`bundler dev exited with ${code}\n${out}\n${err}`)); });
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("Ctrl-C stops")) { clearTimeout(timer); resolve(parse(out)); }
    });
  }).catch((e) => { stopChild(child); throw e; });
  child.removeAllListeners("exit");
  return { ...info, stop: () => stopChild(child), log: () => out + err };
}

function parse(text) {
  const entryPoints = {};
  let current = null;
  const grab = (re) => { const m = re.exec(text); if (!m) throw new Error(`cannot find ${re} in:\n${text}`); return m[1]; };
  for (const line of text.split("\n")) {
    let m = /EntryPoint v(\d\.\d)\s+(0x[0-9a-fA-F]{40})/.exec(line);
    if (m) { current = entryPoints[m[1]] = { entryPoint: m[2] }; continue; }
    m = /^\s+(SimpleAccountFactory|SessionAccount|SessionAccountFactory)\s+(0x[0-9a-fA-F]{40})/.exec(line);
    if (m && current) {
      const key = { SimpleAccountFactory: "simpleAccountFactory", SessionAccount: "sessionAccount", SessionAccountFactory: "sessionAccountFactory" }[m[1]];
      current[key] = m[2];
    }
  }
  return {
    bundlerUrl: grab(/bundler URL\s+(http:\/\/\S+)/),
    nodeUrl: grab(/node URL\s+(http:\/\/\S+)/),
    chainId: Number(grab(/chain id (\d+)/)),
    token: grab(/TestERC20\s+(0x[0-9a-fA-F]{40})/),
    entryPoints,
  };
}

function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => { try { process.kill(-child.pid, "SIGKILL"); } catch {} }, 20_000);
    child.once("exit", () => { clearTimeout(timer); resolve(); });
    try { process.kill(-child.pid, "SIGTERM"); } catch { clearTimeout(timer); resolve(); }
  });
}

/** Polls `fn` until it returns a truthy value; fails after `timeoutMs`. */
export async function waitFor(fn, what, timeoutMs = 60_000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** viem clients on a started dev chain: { chain, publicClient, funder (anvil's first funded account) } */
export function devClients(dev) {
  const chain = defineChain({
    id: dev.chainId, name: "dev", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [dev.nodeUrl] } },
  });
  const publicClient = createPublicClient({ chain, transport: http(dev.nodeUrl), pollingInterval: 100 });
  const funder = createWalletClient({ chain, transport: http(dev.nodeUrl), account: privateKeyToAccount(ANVIL_KEY) });
  return { chain, publicClient, funder };
}
