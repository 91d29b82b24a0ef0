// Unit tests of the client's DOM-free logic: bundles each test/*.test.mjs (which import
// src/*.ts) with esbuild and runs them with node's test runner.
//   node scripts/test.mjs          (npm test)
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sdkSources } from "./sdk.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = mkdtempSync(join(tmpdir(), "dragoman-web-test-"));
try {
  const tests = readdirSync(join(root, "test")).filter((f) => f.endsWith(".test.mjs"));
  await build({
    entryPoints: tests.map((f) => join(root, "test", f)), outdir: out, bundle: true, format: "esm",
    platform: "node", target: "node20", logLevel: "warning", outExtension: { ".js": ".mjs" },
    plugins: [sdkSources],
  });
  const run = spawnSync(process.execPath, ["--test", ...tests.map((f) => join(out, f))], { stdio: "inherit" });
  process.exitCode = run.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
