// Builds the web client into dist/: the app bundle, the capture worklet, the static files, and
// the service worker with the list of everything else to precache.
//   node scripts/build.mjs          (npm run build type-checks first)
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { sdkSources } from "./sdk.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
const common = {
  bundle: true, format: "esm", target: "es2022", minify: true, sourcemap: true, logLevel: "warning",
  plugins: [sdkSources],
};
await build({ ...common, entryPoints: [join(root, "src/main.ts")], outfile: join(dist, "app.js") });
// The admin console (admin.html): its own bundle, with uPlot and its CSS (admin.css).
await build({ ...common, entryPoints: [join(root, "src/admin.ts")], outfile: join(dist, "admin.js") });
// An AudioWorklet module is loaded on its own (audioWorklet.addModule), so it is its own bundle.
await build({ ...common, entryPoints: [join(root, "src/audio/worklet.ts")], outfile: join(dist, "worklet.js") });
cpSync(join(root, "static"), dist, { recursive: true });

// The shell: every file built so far (source maps aside), each with its content's hash as the
// revision workbox keys its cache on.
const shell = readdirSync(dist, { recursive: true, withFileTypes: true })
  .filter((f) => f.isFile() && !f.name.endsWith(".map"))
  .map((f) => join(f.parentPath, f.name))
  .map((path) => ({
    url: relative(dist, path).split(sep).join("/"),
    revision: createHash("sha256").update(readFileSync(path)).digest("hex").slice(0, 16),
  }))
  .sort((a, b) => a.url.localeCompare(b.url));
await build({
  ...common, entryPoints: [join(root, "sw/sw.ts")], outfile: join(dist, "sw.js"), format: "iife",
  // workbox's development logging is behind process.env.NODE_ENV checks
  define: { SHELL: JSON.stringify(shell), "process.env.NODE_ENV": '"production"' },
});
