import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** Bundles the edge server into one file that runs with plain `node` and no node_modules. */
export const BUNDLE = fileURLToPath(new URL('dist/edge-server.mjs', import.meta.url));

export async function buildBundle(): Promise<number> {
  await build({
    entryPoints: [fileURLToPath(new URL('src/main.ts', import.meta.url))],
    outfile: BUNDLE,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    sourcemap: 'linked',
    legalComments: 'linked',
    logLevel: 'warning',
    // Some bundled CommonJS dependencies call require() on node built-ins.
    banner: {
      js: "import { createRequire as __edgeCreateRequire } from 'node:module'; const require = __edgeCreateRequire(import.meta.url);",
    },
  });
  return (await stat(BUNDLE)).size;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const size = await buildBundle();
  console.log(`app/dist/edge-server.mjs: ${(size / 1024).toFixed(0)} KiB (${size} bytes)`);
}
