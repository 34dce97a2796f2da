import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { buildWorkerSources, embeddedSources } from './src/sandbox/worker-source.js';

/** Bundles the edge server into one file that runs with plain `node` and no node_modules. */
export const BUNDLE = fileURLToPath(new URL('dist/edge-server.mjs', import.meta.url));
/** What the start script asks for the heap flags before it starts the server (src/node-flags.ts). */
export const NODE_FLAGS = fileURLToPath(new URL('dist/node-flags.mjs', import.meta.url));

const BUNDLE_OPTIONS = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: true,
  legalComments: 'linked',
  logLevel: 'warning',
  // Some bundled CommonJS dependencies call require() on node built-ins.
  banner: {
    js: "import { createRequire as __edgeCreateRequire } from 'node:module'; const require = __edgeCreateRequire(import.meta.url);",
  },
} as const;

export async function buildBundle(): Promise<number> {
  // The module sandbox's worker scripts, embedded: the bundle stays one file (worker-source.ts).
  const workerSources = embeddedSources(await buildWorkerSources());
  await build({
    ...BUNDLE_OPTIONS,
    entryPoints: [fileURLToPath(new URL('src/main.ts', import.meta.url))],
    outfile: BUNDLE,
    sourcemap: 'linked',
    define: { __EDGE_SANDBOX_SOURCES__: JSON.stringify(workerSources) },
  });
  await build({
    ...BUNDLE_OPTIONS,
    entryPoints: [fileURLToPath(new URL('src/node-flags.ts', import.meta.url))],
    outfile: NODE_FLAGS,
  });
  return (await stat(BUNDLE)).size;
}

/** The example WASM modules: app/modules/<name>/{asconfig.json,manifest.json,assembly/}. */
export const MODULES_SOURCE = fileURLToPath(new URL('modules', import.meta.url));
export const MODULES_OUT = fileURLToPath(new URL('dist/modules', import.meta.url));
const APP_DIR = fileURLToPath(new URL('.', import.meta.url));

/** The only imports the module ABI allows (app/sdk/README.md). */
export const ABI_IMPORTS = ['edge_log', 'get_sensor', 'post_uplink'];
const WASM_PAGE_BYTES = 65536;

export interface BuiltModule {
  name: string;
  wasmPath: string;
  manifestPath: string;
  size: number;
  sha256: string;
}

/** Compiles example modules (all by default) into `<outDir>/<name>/{<name>.wasm,manifest.json}`. */
export async function buildModules(outDir = MODULES_OUT, names?: string[]): Promise<BuiltModule[]> {
  names ??= (await readdir(MODULES_SOURCE, { withFileTypes: true }))
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  await compileModules(outDir, names);
  const built: BuiltModule[] = [];
  for (const name of names) {
    const dir = join(outDir, name);
    const wasmPath = join(dir, `${name}.wasm`);
    const wasm = await readFile(wasmPath);
    const source = JSON.parse(
      await readFile(join(MODULES_SOURCE, name, 'manifest.json'), 'utf8'),
    ) as Record<string, unknown>;
    const sha256 = createHash('sha256').update(wasm).digest('hex');
    const manifest = { ...source, sha256 };
    try {
      checkModule(name, wasm, manifest);
    } catch (error) {
      await rm(wasmPath, { force: true });
      throw error;
    }
    const manifestPath = join(dir, 'manifest.json');
    await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
    built.push({ name, wasmPath, manifestPath, size: wasm.byteLength, sha256 });
  }
  return built;
}

/** Runs asc in a plain node child: app/sdk/compile-modules.mjs says why. */
async function compileModules(outDir: string, names: string[]): Promise<void> {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL('sdk/compile-modules.mjs', import.meta.url)), APP_DIR, outDir, ...names],
    { env, stdio: ['ignore', 'inherit', 'pipe'] },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(stderr.trim() || `asc exited with ${code}`);
}

/** Refuses at build time what the sandbox would refuse at load time. */
function checkModule(name: string, wasm: Uint8Array, manifest: Record<string, unknown>): void {
  const fail: (why: string) => never = (why) => {
    throw new Error(`module ${name}: ${why}`);
  };
  if (manifest.name !== name) fail(`manifest name ${String(manifest.name)} is not the folder's`);
  if (manifest.wasm !== `${name}.wasm`) fail(`manifest wasm must be ${name}.wasm`);
  const module = new WebAssembly.Module(wasm);
  for (const entry of WebAssembly.Module.imports(module)) {
    if (entry.module !== 'env' || entry.kind !== 'function' || !ABI_IMPORTS.includes(entry.name)) {
      fail(`imports ${entry.module}.${entry.name} (${entry.kind}), not in the ABI`);
    }
  }
  if (!WebAssembly.Module.exports(module).some((e) => e.name === 'memory' && e.kind === 'memory')) {
    fail('does not export its memory');
  }
  const maximumPages = declaredMemoryMaximum(wasm);
  if (maximumPages === undefined) fail('memory declares no maximum (asc --maximumMemory)');
  const quota = (manifest.quotas as { memoryBytes?: unknown } | undefined)?.memoryBytes;
  if (typeof quota !== 'number' || maximumPages * WASM_PAGE_BYTES > quota) {
    fail(`memory maximum ${maximumPages * WASM_PAGE_BYTES} bytes is over quotas.memoryBytes`);
  }
}

function readLeb128(bytes: Uint8Array, offset: number): [value: number, next: number] {
  let value = 0;
  let shift = 0;
  let byte: number;
  do {
    byte = bytes[offset++]!;
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, offset];
}

/** The maximum, in 64 KiB pages, of the first memory a wasm binary defines; undefined when it has none. */
export function declaredMemoryMaximum(wasm: Uint8Array): number | undefined {
  let offset = 8; // magic and version
  while (offset < wasm.length) {
    const id = wasm[offset++]!;
    const [size, start] = readLeb128(wasm, offset);
    if (id === 5) {
      const [count, flagsAt] = readLeb128(wasm, start);
      if (count === 0) return undefined;
      const [flags, initialAt] = readLeb128(wasm, flagsAt);
      if ((flags & 1) === 0) return undefined;
      const [, maximumAt] = readLeb128(wasm, initialAt);
      return readLeb128(wasm, maximumAt)[0];
    }
    offset = start + size;
  }
  return undefined;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const size = await buildBundle();
  console.log(`app/dist/edge-server.mjs: ${(size / 1024).toFixed(0)} KiB (${size} bytes)`);
  for (const module of await buildModules()) {
    console.log(
      `app/dist/modules/${module.name}/${module.name}.wasm: ${(module.size / 1024).toFixed(1)} KiB (${module.size} bytes)`,
    );
  }
}
