import type { Config } from '../config.js';
import { checkSha256, ManifestError, parseManifest, type ModuleManifest } from './manifest.js';
import {
  HOST_FUNCTIONS,
  HOST_MODULE,
  MEMORY_EXPORT,
  WASI_MODULE,
  WASM_PAGE_BYTES,
  type HostFunctionName,
} from './wasm-abi.js';
import {
  inspectWasm,
  WasmFormatError,
  type FunctionType,
  type WasmInspection,
} from './wasm-inspect.js';

export type SandboxLimits = Config['modules'];

/** The most table elements a module may declare (V8 allows 10 million: 80 MB outside its memory quota). */
export const MAX_TABLE_ELEMENTS = 100_000;

/** A module checked and compiled, ready to be started in workers. */
export interface PreparedModule {
  manifest: ModuleManifest;
  module: WebAssembly.Module;
  /** Exported functions and their signatures. */
  functions: Map<string, FunctionType>;
  memoryMaxBytes: number;
}

/** Why a module is refused at load: said to whoever loads it (API answer, log). */
export class ModuleRefused extends Error {
  override name = 'ModuleRefused';
}

/**
 * Checks a module before anything runs: its manifest, its hash, its quotas against the device's
 * ceilings, and what its binary declares (memory maximum, tables, imports), then compiles it
 * (cached by hash: a restart or a second load does not compile again).
 */
export async function prepareModule(
  manifestInput: unknown,
  wasm: Uint8Array,
  limits: SandboxLimits,
  cache: Map<string, WebAssembly.Module>,
): Promise<PreparedModule> {
  let manifest: ModuleManifest;
  try {
    manifest = parseManifest(manifestInput);
    checkSha256(manifest, wasm);
  } catch (error) {
    if (error instanceof ManifestError) throw new ModuleRefused(`manifest: ${error.message}`);
    throw error;
  }
  if (wasm.length > limits.maxWasmBytes) {
    throw new ModuleRefused(
      `${manifest.wasm} is ${wasm.length} bytes, over ${limits.maxWasmBytes}`,
    );
  }
  checkQuotas(manifest, limits);
  let inspection: WasmInspection;
  try {
    inspection = inspectWasm(wasm);
  } catch (error) {
    if (error instanceof WasmFormatError)
      throw new ModuleRefused(`malformed binary: ${error.message}`);
    throw error;
  }
  const memoryMaxBytes = checkMemory(inspection, manifest);
  checkTables(inspection);
  checkImports(inspection, manifest);
  checkSchedule(inspection, manifest);
  let module = cache.get(manifest.sha256);
  if (!module) {
    try {
      module = await WebAssembly.compile(wasm);
    } catch (error) {
      throw new ModuleRefused(`malformed binary: ${(error as Error).message}`);
    }
    cache.set(manifest.sha256, module);
  }
  return { manifest, module, functions: inspection.functions, memoryMaxBytes };
}

function checkQuotas(manifest: ModuleManifest, limits: SandboxLimits): void {
  const ceilings: Array<[keyof ModuleManifest['quotas'], number, string]> = [
    ['cpuMsPerCall', limits.maxCpuMsPerCall, 'modules.maxCpuMsPerCall'],
    ['memoryBytes', limits.maxMemoryBytes, 'modules.maxMemoryBytes'],
    ['hostCallsPerSecond', limits.maxHostCallsPerSecond, 'modules.maxHostCallsPerSecond'],
    ['ioBytesPerSecond', limits.maxIoBytesPerSecond, 'modules.maxIoBytesPerSecond'],
  ];
  for (const [quota, ceiling, setting] of ceilings) {
    if (manifest.quotas[quota] > ceiling) {
      throw new ModuleRefused(
        `quotas.${quota} ${manifest.quotas[quota]} is over the device's ceiling ${ceiling} (${setting})`,
      );
    }
  }
  for (const [index, entry] of (manifest.schedule ?? []).entries()) {
    if (entry.everyMs < limits.minScheduleMs) {
      throw new ModuleRefused(
        `schedule.${index}: every ${entry.everyMs} ms is more often than the device allows, every ${limits.minScheduleMs} ms (modules.minScheduleMs)`,
      );
    }
  }
}

function checkMemory(inspection: WasmInspection, manifest: ModuleManifest): number {
  if (inspection.imports.some((entry) => entry.kind === 'memory')) {
    throw new ModuleRefused('the module imports its memory: it must define and export its own');
  }
  if (inspection.memories.length !== 1 || inspection.exports.get(MEMORY_EXPORT) !== 'memory') {
    throw new ModuleRefused(
      `the module must define one memory and export it as "${MEMORY_EXPORT}"`,
    );
  }
  const memory = inspection.memories[0]!;
  if (memory.is64 || memory.shared) {
    throw new ModuleRefused('64-bit and shared memories are not supported');
  }
  if (memory.max === undefined) {
    throw new ModuleRefused(
      `the memory declares no maximum: declare one within quotas.memoryBytes (${manifest.quotas.memoryBytes} bytes)`,
    );
  }
  const maxBytes = memory.max * WASM_PAGE_BYTES;
  if (maxBytes > manifest.quotas.memoryBytes) {
    throw new ModuleRefused(
      `the memory maximum ${maxBytes} bytes (${memory.max} pages) is over quotas.memoryBytes ${manifest.quotas.memoryBytes}`,
    );
  }
  return maxBytes;
}

function checkTables(inspection: WasmInspection): void {
  if (inspection.imports.some((entry) => entry.kind === 'table' || entry.kind === 'global')) {
    throw new ModuleRefused('the module imports a table or a global: only functions are provided');
  }
  for (const table of inspection.tables) {
    if (table.is64) throw new ModuleRefused('64-bit tables are not supported');
    if (
      table.max === undefined ||
      table.max > MAX_TABLE_ELEMENTS ||
      table.min > MAX_TABLE_ELEMENTS
    ) {
      throw new ModuleRefused(
        `a table of ${table.min}..${table.max ?? 'unbounded'} elements: each table must declare a maximum of at most ${MAX_TABLE_ELEMENTS}`,
      );
    }
  }
}

/** A scheduled export must be a function the host can call with no input. */
function checkSchedule(inspection: WasmInspection, manifest: ModuleManifest): void {
  for (const [index, entry] of (manifest.schedule ?? []).entries()) {
    const where = `schedule.${index}: export ${JSON.stringify(entry.export)}`;
    const kind = inspection.exports.get(entry.export);
    if (kind === undefined) throw new ModuleRefused(`${where} is not exported by the module`);
    const type = inspection.functions.get(entry.export);
    if (kind !== 'function' || !type)
      throw new ModuleRefused(`${where} is a ${kind}, not a function`);
    if (type.params.length > 0) {
      throw new ModuleRefused(
        `${where} takes (${type.params.join(', ')}); a scheduled export is called with no arguments`,
      );
    }
  }
}

function checkImports(inspection: WasmInspection, manifest: ModuleManifest): void {
  for (const entry of inspection.imports) {
    const what = `${entry.module}.${entry.name}`;
    if (entry.kind !== 'function')
      throw new ModuleRefused(`unsupported import ${what} (${entry.kind})`);
    if (entry.module === WASI_MODULE && manifest.wasi) continue;
    if (entry.module !== HOST_MODULE || !Object.hasOwn(HOST_FUNCTIONS, entry.name)) {
      throw new ModuleRefused(
        entry.module === WASI_MODULE
          ? `imports ${what} but the manifest does not say "wasi": true`
          : `imports ${what}, which the host does not provide (${Object.keys(HOST_FUNCTIONS)
              .map((n) => `${HOST_MODULE}.${n}`)
              .join(', ')})`,
      );
    }
    const expected = HOST_FUNCTIONS[entry.name as HostFunctionName];
    const actual = entry.type!;
    if (
      actual.params.join() !== expected.params.join() ||
      actual.results.join() !== expected.results.join()
    ) {
      throw new ModuleRefused(
        `imports ${what} as (${actual.params.join(', ')}) -> (${actual.results.join(', ')}); the host's is (${expected.params.join(', ')}) -> (${expected.results.join(', ')})`,
      );
    }
  }
}
