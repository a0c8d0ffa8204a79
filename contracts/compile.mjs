#!/usr/bin/env node
// Compile every contracts/**/*.sol with solc-js (npm `solc`) and write one artifact per
// contract to build/contracts/<ContractName>.json: {contractName, sourceName, abi, bytecode,
// deployedBytecode} (hex strings with 0x).
//
// Usage: node contracts/compile.mjs [--force]
//
// - solc.compile() is called in-process: `solcjs --standard-json` through a pipe truncates
//   large outputs (see DESIGN.md).
// - Imports `@account-abstraction/contracts-v07/...` / `-v08/...` (and any other npm path)
//   resolve from node_modules (BUNDLER_NODE_MODULES overrides, like bundler.artifacts).
// - Up-to-date check: a hash of the compiler settings and every source read is stored in
//   build/contracts/.inputs.sha256; when nothing changed the script exits at once without
//   loading solc (loading soljson alone takes about a second). --force recompiles.
// - Exit code 1 on any compiler error (warnings are printed, not fatal).
import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CONTRACTS = path.join(ROOT, "contracts");
const OUT = path.join(ROOT, "build", "contracts");
const NODE_MODULES = process.env.BUNDLER_NODE_MODULES || path.join(ROOT, "node_modules");
const STAMP = path.join(OUT, ".inputs.sha256");

const SETTINGS = {
  optimizer: { enabled: true, runs: 1000 },
  viaIR: true,
  evmVersion: "cancun",
  metadata: { bytecodeHash: "none" },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

// Source units compiled with other optimizer runs (in a compilation of their own): SessionAccount
// must stay under the EIP-170 code size limit (24,576 bytes), which runs: 1000 crossed once
// ERC-1271/ERC-7739 came in (25.3 kB; 23.7 kB at 200 runs).
const RUNS_OVERRIDES = { "contracts/SessionAccount.sol": 200 };

function listSol(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listSol(full));
    else if (entry.isFile() && entry.name.endsWith(".sol")) out.push(full);
  }
  return out.sort();
}

// Source unit names: our files as "contracts/...", npm imports as their import path.
function resolveImport(unitName) {
  const candidates = [path.join(ROOT, unitName), path.join(NODE_MODULES, unitName)];
  for (const c of candidates) {
    if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  }
  return null;
}

// Read every source reachable from contracts/ (for the up-to-date hash) without solc.
function collectSources() {
  const sources = {};
  const queue = listSol(CONTRACTS).map((f) => path.relative(ROOT, f).split(path.sep).join("/"));
  const importRe = /^\s*import\s+(?:[^'"]*from\s+)?["']([^"']+)["']/gm;
  while (queue.length) {
    const unit = queue.shift();
    if (sources[unit] !== undefined) continue;
    const file = resolveImport(unit);
    if (!file) continue; // solc reports it properly
    const content = fs.readFileSync(file, "utf8");
    sources[unit] = content;
    for (const m of content.matchAll(importRe)) {
      let dep = m[1];
      if (dep.startsWith(".")) dep = path.posix.normalize(path.posix.join(path.posix.dirname(unit), dep));
      if (sources[dep] === undefined) queue.push(dep);
    }
  }
  return sources;
}

function main() {
  const force = process.argv.includes("--force");
  const ownFiles = listSol(CONTRACTS).map((f) => path.relative(ROOT, f).split(path.sep).join("/"));
  if (ownFiles.length === 0) {
    console.error("compile.mjs: no .sol files under contracts/");
    process.exit(1);
  }
  const all = collectSources();
  const require = createRequire(path.join(NODE_MODULES, "noop.js"));
  const solcVersion = require(path.join(NODE_MODULES, "solc", "package.json")).version;
  const hash = createHash("sha256");
  hash.update(JSON.stringify({ solcVersion, SETTINGS, RUNS_OVERRIDES }));
  for (const unit of Object.keys(all).sort()) hash.update(`${unit}\0${all[unit]}\0`);
  const digest = hash.digest("hex");
  if (!force && fs.existsSync(STAMP) && fs.readFileSync(STAMP, "utf8").trim() === digest) {
    console.log("compile.mjs: build/contracts is up to date");
    return;
  }

  const solc = require("solc");
  const findImports = (unit) => {
    const file = resolveImport(unit);
    return file ? { contents: fs.readFileSync(file, "utf8") } : { error: `import not found: ${unit}` };
  };
  // one compilation for the default settings, one per runs override; each selects output only
  // for its own units (an imported unit of another group is type-checked, not code-generated)
  const groups = new Map();
  for (const u of ownFiles) {
    const runs = RUNS_OVERRIDES[u] ?? SETTINGS.optimizer.runs;
    if (!groups.has(runs)) groups.set(runs, []);
    groups.get(runs).push(u);
  }
  const t0 = Date.now();
  const output = { contracts: {} };
  let failed = false;
  for (const [runs, units] of groups) {
    const input = {
      language: "Solidity",
      sources: Object.fromEntries(ownFiles.map((u) => [u, { content: all[u] }])),
      settings: {
        ...SETTINGS,
        optimizer: { ...SETTINGS.optimizer, runs },
        outputSelection: Object.fromEntries(units.map((u) => [u, SETTINGS.outputSelection["*"]])),
      },
    };
    const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
    for (const e of out.errors || []) {
      const text = e.formattedMessage || e.message;
      if (e.severity === "error") failed = true;
      // the other groups report the same source warnings; print them once
      if (e.severity === "error" || runs === SETTINGS.optimizer.runs || units.includes(e.sourceLocation?.file)) console.error(text);
    }
    for (const u of units) output.contracts[u] = out.contracts?.[u];
  }
  if (failed) {
    console.error("compile.mjs: compilation failed");
    process.exit(1);
  }

  fs.mkdirSync(OUT, { recursive: true });
  const written = {};
  for (const unit of ownFiles) {
    for (const [name, c] of Object.entries(output.contracts?.[unit] || {})) {
      if (written[name]) {
        console.error(`compile.mjs: contract name ${name} defined in both ${written[name]} and ${unit}`);
        process.exit(1);
      }
      written[name] = unit;
      const artifact = {
        contractName: name,
        sourceName: unit,
        compiler: `solc-js ${solc.version()}`,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      };
      // write-then-rename: a test reading the artifact meanwhile never sees half a file
      const dest = path.join(OUT, `${name}.json`);
      fs.writeFileSync(`${dest}.tmp`, JSON.stringify(artifact, null, 1) + "\n");
      fs.renameSync(`${dest}.tmp`, dest);
    }
  }
  // drop artifacts of contracts that no longer exist
  for (const f of fs.readdirSync(OUT)) {
    if (f.endsWith(".json") && !written[f.slice(0, -5)]) fs.unlinkSync(path.join(OUT, f));
  }
  fs.writeFileSync(STAMP, digest + "\n");
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`compile.mjs: ${Object.keys(written).length} contracts -> build/contracts (${secs} s)`);
}

main();
