import type { ExecutionContext } from 'ava';
import { Ajv } from 'ajv';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODULES_OUT, buildModules, declaredMemoryMaximum } from '../../build.js';
import {
  ALLOC_EXPORT,
  EdgeError,
  HOST_FUNCTIONS,
  HOST_MODULE,
  LOG_LEVELS,
  LOG_MAX_BYTES,
  MEMORY_EXPORT,
  SENSOR_PATH_MAX_BYTES,
  SENSOR_READ_MAX_BYTES,
  UPLINK_MAX_BYTES,
  WASM_PAGE_BYTES,
} from '../../src/sandbox/wasm-abi.js';

export interface Manifest {
  name: string;
  version: string;
  wasm: string;
  sha256: string;
  wasi: boolean;
  capabilities: { log: boolean; sensors: string[]; uplink?: { schema: object } };
  quotas: {
    cpuMsPerCall: number;
    memoryBytes: number;
    hostCallsPerSecond: number;
    ioBytesPerSecond: number;
  };
}

export interface BuiltExample {
  wasm: Buffer;
  manifest: Manifest;
  module: WebAssembly.Module;
}

const APP = fileURLToPath(new URL('../../', import.meta.url));

/** The newest modification time of the files under the given paths. */
function newestChange(paths: string[]): number {
  let newest = 0;
  for (const path of paths) {
    const info = statSync(path);
    if (info.isDirectory()) {
      const children = readdirSync(path).map((child) => join(path, child));
      newest = Math.max(newest, newestChange(children));
    } else newest = Math.max(newest, info.mtimeMs);
  }
  return newest;
}

/** Whether app/dist/modules/<name> was built after every input it comes from changed. */
function builtIsFresh(name: string, wasmPath: string, manifestPath: string): boolean {
  if (!existsSync(wasmPath) || !existsSync(manifestPath)) return false;
  const built = Math.min(statSync(wasmPath).mtimeMs, statSync(manifestPath).mtimeMs);
  const inputs = [
    join(APP, 'sdk'),
    join(APP, 'modules', name),
    join(APP, 'build.ts'),
    createRequire(import.meta.url).resolve('assemblyscript/package.json'),
  ];
  return newestChange(inputs) < built;
}

/**
 * One example module (app/modules/<name>) as `npm run build` makes it: app/dist/modules/<name>
 * when it is newer than its sources, else compiled there now (asc takes seconds).
 */
export async function buildExample(name: string): Promise<BuiltExample> {
  const wasmPath = join(MODULES_OUT, name, `${name}.wasm`);
  const manifestPath = join(MODULES_OUT, name, 'manifest.json');
  if (!builtIsFresh(name, wasmPath, manifestPath)) await buildModules(MODULES_OUT, [name]);
  const wasm = readFileSync(wasmPath);
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  return { wasm, manifest, module: await WebAssembly.compile(wasm) };
}

export interface LogEntry {
  level: number;
  text: string;
}

/** What a sensor file holds for the test: its text, or the error code the host returns. */
export type SensorValue = string | number;

/**
 * A stand-in for the sandbox's host functions that records what the module does; it follows the
 * ABI (bounds, UTF-8, sizes, whitelist, schema) so the module's own logic is under test.
 */
export class RecordingHost {
  readonly logs: LogEntry[] = [];
  readonly uplinks: string[] = [];
  readonly sensorReads: string[] = [];
  /** What edge_log returns after recording (a quota error, say). */
  logResult = 0;
  private memory: WebAssembly.Memory | undefined;
  private readonly validateUplink: ((data: unknown) => boolean) | undefined;

  constructor(
    private readonly manifest: Manifest,
    private readonly sensors: Record<string, SensorValue> = {},
  ) {
    const schema = manifest.capabilities.uplink?.schema;
    this.validateUplink = schema ? new Ajv({ strict: true }).compile(schema) : undefined;
  }

  async instantiate(module: WebAssembly.Module): Promise<WebAssembly.Instance> {
    const instance = await WebAssembly.instantiate(module, { [HOST_MODULE]: this.imports() });
    this.memory = instance.exports[MEMORY_EXPORT] as WebAssembly.Memory;
    return instance;
  }

  /** A call with input bytes, as the host makes it: edge_alloc(len), copy, fn(ptr, len). */
  callWithInput(instance: WebAssembly.Instance, fn: string, input: Uint8Array | string): number {
    const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : input;
    const exports = instance.exports as Record<string, (...args: number[]) => number>;
    const ptr = exports[ALLOC_EXPORT]!(bytes.length);
    new Uint8Array(this.memory!.buffer, ptr, bytes.length).set(bytes);
    return exports[fn]!(ptr, bytes.length);
  }

  private bytes(ptr: number, len: number): Uint8Array | number {
    const size = this.memory!.buffer.byteLength;
    if (ptr < 0 || len < 0 || ptr + len > size) return EdgeError.EINVAL;
    return new Uint8Array(this.memory!.buffer, ptr, len);
  }

  private text(ptr: number, len: number, limit: number): string | number {
    if (len > limit) return EdgeError.ETOOBIG;
    const bytes = this.bytes(ptr, len);
    if (typeof bytes === 'number') return bytes;
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return EdgeError.EUTF8;
    }
  }

  private imports() {
    return {
      edge_log: (level: number, ptr: number, len: number): number => {
        if (!this.manifest.capabilities.log) return EdgeError.EDENIED;
        if (level < 0 || level >= LOG_LEVELS.length) return EdgeError.EINVAL;
        const text = this.text(ptr, len, LOG_MAX_BYTES);
        if (typeof text === 'number') return text;
        this.logs.push({ level, text });
        return this.logResult;
      },
      get_sensor: (pathPtr: number, pathLen: number, outPtr: number, outCap: number): number => {
        const path = this.text(pathPtr, pathLen, SENSOR_PATH_MAX_BYTES);
        if (typeof path === 'number') return path;
        this.sensorReads.push(path);
        if (!this.manifest.capabilities.sensors.includes(path)) return EdgeError.EDENIED;
        const value = this.sensors[path];
        if (value === undefined) return EdgeError.EIO;
        if (typeof value === 'number') return value;
        const out = this.bytes(outPtr, outCap);
        if (typeof out === 'number') return out;
        const content = new TextEncoder()
          .encode(value)
          .subarray(0, Math.min(outCap, SENSOR_READ_MAX_BYTES));
        out.set(content);
        return content.length;
      },
      post_uplink: (ptr: number, len: number): number => {
        if (!this.validateUplink) return EdgeError.EDENIED;
        const json = this.text(ptr, len, UPLINK_MAX_BYTES);
        if (typeof json === 'number') return json;
        let payload: unknown;
        try {
          payload = JSON.parse(json);
        } catch {
          return EdgeError.ESCHEMA;
        }
        if (!this.validateUplink(payload)) return EdgeError.ESCHEMA;
        this.uplinks.push(json);
        return 0;
      },
    };
  }
}

/** The only imports the ABI allows (as functions from env). */
const ABI_IMPORT_NAMES: string[] = Object.keys(HOST_FUNCTIONS);

/** The ABI's rules for a built module: imports, memory, manifest, hash. */
export async function checkBuiltModule(
  t: ExecutionContext,
  built: BuiltExample,
  name: string,
  expectedImports: string[],
): Promise<void> {
  const imports = WebAssembly.Module.imports(built.module);
  t.deepEqual(
    imports.map((entry) => `${entry.module}.${entry.name}:${entry.kind}`).sort(),
    expectedImports.map((importName) => `${HOST_MODULE}.${importName}:function`).sort(),
    'imports exactly the host functions it uses, nothing else (no env.abort, seed, trace)',
  );
  t.true(expectedImports.every((importName) => ABI_IMPORT_NAMES.includes(importName)));
  t.true(
    WebAssembly.Module.exports(built.module).some(
      (entry) => entry.name === MEMORY_EXPORT && entry.kind === 'memory',
    ),
  );
  const maximumPages = declaredMemoryMaximum(built.wasm);
  t.is(typeof maximumPages, 'number', 'memory declares a maximum');
  t.true(maximumPages! * WASM_PAGE_BYTES <= built.manifest.quotas.memoryBytes);
  // V8 enforces the declared maximum: growing to it works, one page past it does not.
  const instance = await new RecordingHost(built.manifest).instantiate(built.module);
  const memory = instance.exports[MEMORY_EXPORT] as WebAssembly.Memory;
  memory.grow(maximumPages! - memory.buffer.byteLength / WASM_PAGE_BYTES);
  t.throws(() => memory.grow(1), { instanceOf: RangeError });

  const m = built.manifest;
  t.is(m.name, name);
  t.regex(m.name, /^[a-z0-9][a-z0-9-]{0,62}$/);
  t.is(m.wasm, `${name}.wasm`);
  t.is(m.sha256, createHash('sha256').update(built.wasm).digest('hex'));
  t.is(m.wasi, false);
  t.is(typeof m.version, 'string');
  t.is(typeof m.capabilities.log, 'boolean');
  t.true(Array.isArray(m.capabilities.sensors));
  for (const quota of ['cpuMsPerCall', 'memoryBytes', 'hostCallsPerSecond', 'ioBytesPerSecond']) {
    t.true(Number.isInteger(m.quotas[quota as keyof Manifest['quotas']]), quota);
  }
}
