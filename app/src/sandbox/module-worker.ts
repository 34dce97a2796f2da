import { parentPort, workerData } from 'node:worker_threads';
import { runInThisContext } from 'node:vm';
import { Ajv } from 'ajv';
import { HostFunctions } from './host-functions.js';
import type { CallOutcome, FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { currentThreadId, ownThreadCpuClock } from './thread-cpu.js';
import {
  ALLOC_EXPORT,
  HOST_MODULE,
  INIT_EXPORT,
  LOG_MAX_BYTES,
  MEMORY_EXPORT,
  WASI_MODULE,
} from './wasm-abi.js';
import type { ValueType } from './wasm-inspect.js';
import { WasiFsLimit } from './wasi-fs-limit.js';

/**
 * The worker's side of one module: instantiates the compiled module it was given, with the
 * host functions as its `env` imports, and runs the calls the server sends, one at a time.
 * Built into a script of its own (worker-source.ts); runs in its own V8 isolate.
 */

interface WasiLibrary {
  init(): Promise<void>;
  WASI: new (config: { args: string[]; env: Record<string, string> }) => WasiInstance;
}
interface WasiInstance {
  getImports(module: WebAssembly.Module): Record<string, WebAssembly.ModuleImports>;
  instantiate(instance: WebAssembly.Instance, imports: object): WebAssembly.Instance;
  getStdoutBuffer(): Uint8Array;
  getStderrBuffer(): Uint8Array;
}

/** Guest output is not trusted to be UTF-8: invalid bytes become U+FFFD. */
const lenientUtf8 = new TextDecoder('utf-8');

export type CallMessage = ToWorker & { params: ValueType[] };

const port = parentPort!;
const send = (message: FromWorker) => port.postMessage(message);

/** Asks the server to end this worker, and unwinds the guest (which cannot go on meanwhile). */
function stop(reason: string): never {
  send({ type: 'stopped', message: reason });
  throw new Error(reason);
}

/**
 * Runs the library's init, keeping the wasm memory it instantiates (where its in-memory files
 * live): the library does not expose it, and the file system quota measures it.
 */
async function initWasiLibrary(library: WasiLibrary): Promise<WebAssembly.Memory> {
  const instantiate = WebAssembly.instantiate;
  let memory: unknown;
  WebAssembly.instantiate = (async (...args: [WebAssembly.Module, WebAssembly.Imports]) => {
    const result = (await instantiate(...args)) as
      WebAssembly.Instance | WebAssembly.WebAssemblyInstantiatedSource;
    const instance = result instanceof WebAssembly.Instance ? result : result.instance;
    memory ??= instance.exports.memory;
    return result;
  }) as typeof instantiate;
  try {
    await library.init();
  } finally {
    WebAssembly.instantiate = instantiate;
  }
  if (!(memory instanceof WebAssembly.Memory)) throw new Error('@wasmer/wasi made no memory');
  return memory;
}

async function start(init: WorkerInit): Promise<void> {
  const { policy } = init;
  const validateUplink = policy.uplinkSchema
    ? new Ajv({ strict: false }).compile(policy.uplinkSchema)
    : undefined;
  const host = new HostFunctions(
    policy,
    {
      log: (level, text) => send({ type: 'log', level, text }),
      uplink: (payload) => send({ type: 'uplink', payload }),
    },
    validateUplink,
  );
  let imports: WebAssembly.Imports = { [HOST_MODULE]: host.imports() };
  let wasi: WasiInstance | undefined;
  let fsLimit: WasiFsLimit | undefined;
  if (init.wasi) {
    // The library is a script that sets a global: loaded only in the workers of WASI modules.
    runInThisContext(init.wasiSource ?? '', { filename: 'wasmer-wasi.js' });
    const library = (globalThis as unknown as { __edgeWasi: WasiLibrary }).__edgeWasi;
    const libraryMemory = await initWasiLibrary(library);
    wasi = new library.WASI({ args: [init.name], env: {} });
    const wasiImports = wasi.getImports(init.module);
    fsLimit = new WasiFsLimit(libraryMemory, init.wasiFsMaxBytes, stop);
    imports = {
      ...wasiImports,
      [WASI_MODULE]: fsLimit.wrap(host.chargeWasiWrites(wasiImports[WASI_MODULE] ?? {})),
      [HOST_MODULE]: host.imports(),
    };
  }
  const instance = await WebAssembly.instantiate(init.module, imports);
  wasi?.instantiate(instance, {});
  const exports = instance.exports;
  const memory = exports[MEMORY_EXPORT];
  if (!(memory instanceof WebAssembly.Memory)) throw new Error('the module exports no memory');
  host.bindMemory(memory);
  fsLimit?.bindMemory(memory);
  const flushWasiOutput = () => {
    if (!wasi) return;
    for (const [level, output] of [
      ['info', wasi.getStdoutBuffer()],
      ['warn', wasi.getStderrBuffer()],
    ] as const) {
      const text = lenientUtf8.decode(output);
      if (text) send({ type: 'log', level, text: text.slice(0, LOG_MAX_BYTES) });
    }
  };
  if (typeof exports._initialize === 'function') (exports._initialize as () => void)();
  if (typeof exports[INIT_EXPORT] === 'function') (exports[INIT_EXPORT] as () => void)();
  flushWasiOutput();
  // Calls are charged this thread's CPU time. The server's watchdog reads it by thread id, from
  // the figure sent when the thread went idle (the thread uses next to none until the next call).
  const cpuClock = ownThreadCpuClock();
  const tid = cpuClock ? currentThreadId() : undefined;
  const clock = cpuClock && tid !== undefined ? cpuClock : () => performance.now();
  send({
    type: 'ready',
    memoryBytes: memory.buffer.byteLength,
    stats: host.takeStats(),
    tid,
    threadCpuMs: tid === undefined ? undefined : clock(),
  });

  port.on('message', (message: CallMessage) => {
    const started = clock();
    const outcome = runCall(exports, memory, message);
    const ended = clock();
    flushWasiOutput();
    send({
      type: 'result',
      id: message.id,
      outcome,
      cpuMs: ended - started,
      threadCpuMs: tid === undefined ? undefined : ended,
      memoryBytes: memory.buffer.byteLength,
      stats: host.takeStats(),
    });
  });
}

function runCall(
  exports: WebAssembly.Exports,
  memory: WebAssembly.Memory,
  { exportName, input, params }: CallMessage,
): CallOutcome {
  const fn = Object.hasOwn(exports, exportName) ? exports[exportName] : undefined;
  if (typeof fn !== 'function') {
    return { ok: false, kind: 'bad-call', message: `no exported function ${exportName}` };
  }
  let args: unknown[];
  try {
    if (input.kind === 'args') {
      args = input.args.map((arg, index) => (params[index] === 'i64' ? BigInt(arg) : Number(arg)));
    } else {
      const alloc = exports[ALLOC_EXPORT];
      if (typeof alloc !== 'function') {
        return {
          ok: false,
          kind: 'bad-call',
          message: `input bytes need an ${ALLOC_EXPORT} export`,
        };
      }
      const ptr = (alloc as (len: number) => unknown)(input.bytes.length);
      if (
        typeof ptr !== 'number' ||
        ptr < 0 ||
        ptr + input.bytes.length > memory.buffer.byteLength
      ) {
        return {
          ok: false,
          kind: 'trap',
          message: `${ALLOC_EXPORT} returned ${String(ptr)}, outside memory`,
        };
      }
      new Uint8Array(memory.buffer, ptr, input.bytes.length).set(input.bytes);
      args = [ptr, input.bytes.length];
    }
  } catch (error) {
    return { ok: false, kind: errorKind(error), message: (error as Error).message };
  }
  try {
    return { ok: true, value: jsonValue((fn as (...a: unknown[]) => unknown)(...args)) };
  } catch (error) {
    return {
      ok: false,
      kind: errorKind(error),
      message: String((error as Error)?.message ?? error),
    };
  }
}

/** A wasm trap (or stack overflow) is the module's; a conversion TypeError is the caller's. */
function errorKind(error: unknown): 'trap' | 'bad-call' {
  return error instanceof TypeError || error instanceof SyntaxError ? 'bad-call' : 'trap';
}

function jsonValue(value: unknown): number | string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'bigint') {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  // Multi-value results come as an array of numbers.
  return JSON.stringify(value, (_key, item: unknown) =>
    typeof item === 'bigint' ? item.toString() : item,
  );
}

if (workerData && (workerData as { edgeSandbox?: unknown }).edgeSandbox) {
  const init = (workerData as { edgeSandbox: WorkerInit }).edgeSandbox;
  start(init).catch((error: unknown) => {
    send({ type: 'start-failed', message: String((error as Error)?.message ?? error) });
  });
}
