import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import type * as Esbuild from 'esbuild';

/**
 * The code a module's worker runs. A worker needs a script of its own, and the edge server
 * ships as one file: build.ts builds the worker entry (module-worker.ts) and the @wasmer/wasi
 * library into two scripts with esbuild and embeds them, deflated, in the bundle through
 * `define`. Run from the TypeScript sources (tests, `tsx`), there is no such constant, and the
 * scripts are built here on first use with esbuild (a development dependency).
 */
export interface WorkerSources {
  /** module-worker.ts as a CommonJS script, for `new Worker(source, { eval: true })`. */
  worker: string;
  /** @wasmer/wasi as a script that sets `globalThis.__edgeWasi`. */
  wasi: string;
}

declare const __EDGE_SANDBOX_SOURCES__: WorkerSources | undefined;

let sources: Promise<WorkerSources> | undefined;

export function workerSources(): Promise<WorkerSources> {
  sources ??=
    typeof __EDGE_SANDBOX_SOURCES__ === 'undefined'
      ? buildWorkerSources()
      : Promise.resolve({
          worker: inflate(__EDGE_SANDBOX_SOURCES__.worker),
          wasi: inflate(__EDGE_SANDBOX_SOURCES__.wasi),
        });
  return sources;
}

/** The sources as build.ts embeds them: deflated, base64 (a third of the bundle's bytes). */
export function embeddedSources(built: WorkerSources): WorkerSources {
  return { worker: deflate(built.worker), wasi: deflate(built.wasi) };
}

// A specifier in a variable: esbuild leaves the import alone instead of bundling esbuild.
const ESBUILD = 'esbuild';

/** Builds both scripts with esbuild's JS API. */
export async function buildWorkerSources(): Promise<WorkerSources> {
  const esbuild = (await import(ESBUILD)) as typeof Esbuild;
  const common = {
    bundle: true,
    platform: 'node',
    target: 'node20',
    minify: true,
    write: false,
    logLevel: 'warning',
  } as const;
  const [worker, wasi] = await Promise.all([
    esbuild.build({
      ...common,
      entryPoints: [fileURLToPath(new URL('./module-worker.ts', import.meta.url))],
      format: 'cjs',
    }),
    esbuild.build({
      ...common,
      stdin: {
        contents: "export { init, WASI } from '@wasmer/wasi';",
        resolveDir: dirname(fileURLToPath(import.meta.url)),
        loader: 'js',
      },
      format: 'iife',
      globalName: '__edgeWasi',
    }),
  ]);
  return { worker: worker.outputFiles[0]!.text, wasi: wasi.outputFiles[0]!.text };
}

function deflate(text: string): string {
  return deflateRawSync(text, { level: 9 }).toString('base64');
}

function inflate(base64: string): string {
  return inflateRawSync(Buffer.from(base64, 'base64')).toString('utf8');
}
