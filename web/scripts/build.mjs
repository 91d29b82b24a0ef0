// Builds the web client into dist/: the app bundle, the capture worklet, and the static files.
//   node scripts/build.mjs          (npm run build type-checks first)
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
const common = { bundle: true, format: "esm", target: "es2022", minify: true, sourcemap: true, logLevel: "warning" };
await build({ ...common, entryPoints: [join(root, "src/main.ts")], outfile: join(dist, "app.js") });
// An AudioWorklet module is loaded on its own (audioWorklet.addModule), so it is its own bundle.
await build({ ...common, entryPoints: [join(root, "src/audio/worklet.ts")], outfile: join(dist, "worklet.js") });
cpSync(join(root, "static"), dist, { recursive: true });
