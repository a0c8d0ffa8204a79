// The pins of this package resolve together: the repository's toolchain installs exactly the
// viem / permissionless / typescript versions sdk/ts/package.json names, npm reports no invalid or
// missing (peer) dependency among them, and permissionless' viem peer range accepts the pinned viem.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import semver from "semver";
import { REPO } from "./devchain.mjs";

const pkg = JSON.parse(readFileSync(path.join(REPO, "sdk/ts/package.json"), "utf8"));
const root = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8"));

test("viem, permissionless and typescript pins resolve together without peer-dependency errors", () => {
  for (const name of ["viem", "permissionless", "typescript"]) {
    assert.equal(root.dependencies[name], pkg.devDependencies[name], `${name}: the toolchain and sdk/ts pin different versions`);
  }
  // npm ls exits non-zero on invalid / missing / unmet peer dependencies in the listed trees
  const out = execFileSync("npm", ["ls", "viem", "permissionless", "typescript", "--json"], { cwd: REPO, encoding: "utf8" });
  const tree = JSON.parse(out);
  assert.equal(tree.problems, undefined, JSON.stringify(tree.problems));
  for (const name of ["viem", "permissionless", "typescript"]) {
    assert.equal(tree.dependencies[name].version, pkg.devDependencies[name]);
  }
  const installed = (name) => JSON.parse(readFileSync(path.join(REPO, "node_modules", name, "package.json"), "utf8"));
  const peer = installed("permissionless").peerDependencies.viem;
  assert.ok(semver.satisfies(pkg.devDependencies.viem, peer), `permissionless wants viem ${peer}`);
  assert.ok(semver.satisfies(pkg.devDependencies.viem, pkg.peerDependencies.viem), "our own viem peer range");
});
