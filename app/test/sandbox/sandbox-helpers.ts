import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import wabtInit from 'wabt';
import { loadConfig, type Config } from '../../src/config.js';
import type { SandboxLog } from '../../src/sandbox/module-instance.js';
import { ModuleRegistry, type RegistryDeps } from '../../src/sandbox/module-registry.js';

const wabt = await wabtInit();

/** A WebAssembly binary from its text format (the npm wabt package). */
export function wat(source: string): Uint8Array {
  const module = wabt.parseWat('test.wat', source);
  try {
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A manifest for `wasm`, with what a test changes merged in. */
export function manifestFor(
  name: string,
  wasm: Uint8Array,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    name,
    version: '1.0.0',
    wasm: `${name}.wasm`,
    sha256: sha256(wasm),
    capabilities: { log: true },
    quotas: {
      cpuMsPerCall: 1000,
      memoryBytes: 1 << 20,
      hostCallsPerSecond: 200,
      ioBytesPerSecond: 65536,
    },
    ...overrides,
  };
}

export interface LogLine {
  level: string;
  object: object;
  message: string;
}

/** A logger that keeps what it is given. */
export function memoryLog(): SandboxLog & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (object: object, message: string) =>
    lines.push({ level, object, message });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export type SandboxLimits = Config['modules'];

export function testLimits(overrides: Partial<SandboxLimits> = {}): SandboxLimits {
  // config.js, not ../helpers.js: that one loads the whole server, a second per test file.
  // Schedules as often as a manifest may ask (10 ms), not the device's default floor.
  return {
    ...loadConfig({ env: {} }).modules,
    restartBackoffMs: 10,
    minScheduleMs: 10,
    ...overrides,
  };
}

export function testRegistry(
  limits: Partial<SandboxLimits> = {},
  deps: Partial<RegistryDeps> = {},
): ModuleRegistry & { log: ReturnType<typeof memoryLog> } {
  const log = memoryLog();
  const registry = new ModuleRegistry(testLimits(limits), { log, ...deps });
  return Object.assign(registry, { log });
}

/**
 * The guest most tests use: every host function behind an export that takes the input bytes
 * (edge_alloc puts them at 8192), and exports that misbehave on demand.
 */
export function guestWat({ version = 1, maxPages = '2', init = '' } = {}): string {
  return `(module
  (import "env" "edge_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "get_sensor" (func $sensor (param i32 i32 i32 i32) (result i32)))
  (import "env" "post_uplink" (func $uplink (param i32 i32) (result i32)))
  (memory (export "memory") 1 ${maxPages})
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 8192))
  ${init ? `(func (export "edge_init") ${init})` : ''}
  (func (export "version") (result i32) (i32.const ${version}))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "wide") (param i64) (result i64) (i64.mul (local.get 0) (i64.const 2)))
  (func (export "log") (param i32 i32) (result i32) (call $log (i32.const 1) (local.get 0) (local.get 1)))
  (func (export "log_level") (param i32) (result i32) (call $log (local.get 0) (i32.const 0) (i32.const 0)))
  (func (export "sensor") (param i32 i32) (result i32)
    (call $sensor (local.get 0) (local.get 1) (i32.const 4096) (i32.const 64)))
  (func (export "sensor_into") (param i32 i32) (result i32)
    (call $sensor (i32.const 8192) (i32.const 4) (local.get 0) (local.get 1)))
  (func (export "byte") (param i32) (result i32) (i32.load8_u (i32.add (i32.const 4096) (local.get 0))))
  (func (export "uplink") (param i32 i32) (result i32) (call $uplink (local.get 0) (local.get 1)))
  (func (export "flood") (param $n i32) (result i32) (local $refused i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (if (i32.eq (call $log (i32.const 0) (i32.const 0) (i32.const 0)) (i32.const -7))
        (then (local.set $refused (i32.add (local.get $refused) (i32.const 1)))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next)))
    (local.get $refused))
  (func (export "spin") (loop $forever (br $forever)))
  (func (export "busy") (param $n i32) (result i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next)))
    (i32.const ${version}))
  (func $recurse (export "recurse") (param i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "grow_bomb") (result i32) (local $n i32)
    (block $done (loop $next
      (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $next)))
    (local.get $n))
  (func (export "trap") (unreachable))
)`;
}

/**
 * Asserts that `promise` rejects with an error of `code` (and a message matching `message`).
 * The sandbox's errors come from @fastify/error, which ava's throwsAsync does not take for errors.
 */
export async function failsWith(
  t: ExecutionContext,
  promise: Promise<unknown>,
  code: string,
  message?: RegExp,
): Promise<Error | undefined> {
  try {
    await promise;
  } catch (error) {
    t.is((error as { code?: string }).code, code, (error as Error).message);
    if (message) t.regex((error as Error).message, message);
    return error as Error;
  }
  t.fail(`resolved; expected ${code}`);
  return undefined;
}
