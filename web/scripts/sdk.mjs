// The web client uses the TypeScript SDK (@dragoman/client) from its sources in
// ../clients/typescript/src, bundled with the page: no SDK build step, and its
// protobuf and connect imports resolve to web/'s own copies (the same pinned
// versions, checked by tests/browser/test_web_stubs.py), so the bundle has one of each.
// tsconfig.json's `paths` say the same to tsc (esbuild skips those, as they name .d.ts files).
import { dirname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const sdk = join(web, "..", "clients", "typescript", "src");

/** esbuild plugin: `@dragoman/client` → the SDK's index.ts; its dependencies → web/node_modules. */
export const sdkSources = {
  name: "dragoman-sdk-sources",
  setup(build) {
    build.onResolve({ filter: /^@dragoman\/client$/ }, () => ({ path: join(sdk, "index.ts") }));
    build.onResolve({ filter: /^@(bufbuild|connectrpc)\// }, (args) => {
      if (!args.importer.startsWith(sdk + sep)) return undefined;
      return build.resolve(args.path, { kind: args.kind, resolveDir: web });
    });
  },
};
