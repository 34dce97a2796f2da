import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Registry } from 'prom-client';
import { Scheduler } from '../runtime/scheduler.js';
import { readAddressSpace, refuseWasmMemory, type AddressSpace } from './address-space.js';
import { ModuleNotFound, ModuleRefusedError, NoRoomForModule } from './errors.js';
import {
  ModuleInstance,
  type CallResult,
  type InstanceState,
  type SandboxLog,
} from './module-instance.js';
import { ModuleLogBudget } from './module-log-budget.js';
import { ModuleMetrics } from './module-metrics.js';
import { ModuleRefused, prepareModule, type SandboxLimits } from './module-package.js';
import { ModuleSchedules } from './module-schedule.js';
import type { CallInput } from './protocol.js';
import type { UplinkSink } from './uplink-sender.js';
import {
  parseManifest,
  type ModuleManifest,
  type ModuleQuotas,
  type ScheduleEntry,
} from './manifest.js';
import type { FunctionType } from './wasm-inspect.js';
import { workerSources } from './worker-source.js';

export type ModuleSource = 'api' | 'directory';

export interface ModuleInfo {
  name: string;
  version: string;
  sha256: string;
  source: ModuleSource;
  wasi: boolean;
  state: InstanceState;
  restarts: number;
  lastFailure: string | null;
  memoryBytes: number;
  memoryMaxBytes: number;
  quotas: ModuleQuotas;
  /** The exports the host calls on a schedule (the manifest's `schedule`). */
  schedule: ScheduleEntry[];
  exports: Array<{ name: string } & FunctionType>;
}

export interface ReloadReport {
  loaded: string[];
  unchanged: string[];
  removed: string[];
  refused: Array<{ name: string; reason: string }>;
}

interface Entry {
  instance: ModuleInstance;
  source: ModuleSource;
}

export interface RegistryDeps {
  log: SandboxLog;
  uplink?: UplinkSink | undefined;
  /** The process's address space; /proc/self by default (tests give their own). */
  addressSpace?: () => AddressSpace | undefined;
  /** The server's metrics registry (/metrics), where the per-module metrics are added. */
  metricsRegistry?: Registry;
  /** Runs the manifests' schedules: the server's (their jitter at /metrics), else one of its own. */
  scheduler?: Scheduler;
  /** Whether module calls are shed (memory pressure): a scheduled call is then not made. */
  shedding?: () => boolean;
}

/**
 * The modules that run, by name. A change (load, replace, unload) swaps one entry of the map:
 * calls already given to the old instance finish there, new calls go to the new one, and a
 * replacement that does not start leaves the old one serving. Changes to one name are serial.
 */
export class ModuleRegistry {
  readonly metrics = new ModuleMetrics();
  readonly #moduleLog: ModuleLogBudget;
  readonly #modules = new Map<string, Entry>();
  /** Compiled modules by SHA-256: a restart or a reload does not compile again. */
  readonly #compiled = new Map<string, WebAssembly.Module>();
  readonly #changes = new Map<string, Promise<unknown>>();
  readonly #retiring = new Set<Promise<void>>();
  readonly #schedules: ModuleSchedules;
  #closed = false;

  constructor(
    readonly limits: SandboxLimits,
    private readonly deps: RegistryDeps,
  ) {
    if (deps.metricsRegistry) this.metrics.registerIn(deps.metricsRegistry);
    const moduleLog = new ModuleLogBudget(
      limits.maxLogLinesPerSecond,
      deps.log,
      this.metrics.logDropped,
    );
    this.#moduleLog = moduleLog;
    this.#schedules = new ModuleSchedules({
      scheduler: deps.scheduler ?? new Scheduler(),
      log: deps.log,
      shedding: deps.shedding,
    });
    if (deps.uplink) {
      deps.uplink.onOutcome = (module, outcome, reason) => {
        this.metrics.uplinks.inc({ module, outcome });
        if (outcome === 'dropped') moduleLog.uplinkDropped(module);
        else if (outcome === 'failed')
          moduleLog.write(module, 'warn', { outcome, reason }, 'uplink not delivered');
      };
    }
  }

  list(): ModuleInfo[] {
    return [...this.#modules.keys()].sort().map((name) => this.info(name)!);
  }

  info(name: string): ModuleInfo | undefined {
    const entry = this.#modules.get(name);
    if (!entry) return undefined;
    const { instance, source } = entry;
    const { manifest, functions, memoryMaxBytes } = instance.prepared;
    return {
      name,
      version: manifest.version,
      sha256: manifest.sha256,
      source,
      wasi: manifest.wasi,
      state: instance.state,
      restarts: instance.restarts,
      lastFailure: instance.lastFailure ?? null,
      memoryBytes: instance.memoryBytes,
      memoryMaxBytes,
      quotas: manifest.quotas,
      schedule: manifest.schedule ?? [],
      exports: [...functions].map(([exportName, type]) => ({ name: exportName, ...type })),
    };
  }

  call(name: string, exportName: string, input: CallInput): Promise<CallResult> {
    const entry = this.#modules.get(name);
    if (!entry) return Promise.reject(new ModuleNotFound(name));
    return entry.instance.call(exportName, input);
  }

  /** Loads or replaces a module; throws MODULE_REFUSED, MODULE_START_FAILED or MODULE_NO_ROOM. */
  async install(
    manifest: unknown,
    wasm: Uint8Array,
    source: ModuleSource = 'api',
  ): Promise<ModuleInfo> {
    const claimed = (manifest as { name?: unknown } | null)?.name;
    const claimedName = typeof claimed === 'string' ? claimed : '?';
    let prepared;
    try {
      prepared = await prepareModule(manifest, wasm, this.limits, this.#compiled);
    } catch (error) {
      if (error instanceof ModuleRefused) throw new ModuleRefusedError(claimedName, error.message);
      throw error;
    }
    const { name } = prepared.manifest;
    const sources = await workerSources();
    const installing = this.#serially(name, async () => {
      if (this.#closed) throw new ModuleRefusedError(name, 'the server is closing');
      if (!this.#modules.has(name) && this.#modules.size >= this.limits.maxModules) {
        throw new NoRoomForModule(
          `${this.limits.maxModules} modules run already (modules.maxModules)`,
        );
      }
      const instance = new ModuleInstance(prepared, {
        limits: this.limits,
        sources,
        metrics: this.metrics,
        log: this.deps.log,
        moduleLog: this.#moduleLog,
        uplink: this.deps.uplink,
        admit: () => refuseWasmMemory((this.deps.addressSpace ?? readAddressSpace)()),
      });
      await instance.start();
      const previous = this.#modules.get(name);
      // The old schedule stops before the swap: never two tasks for one export.
      if (previous) await this.#schedules.remove(name);
      this.#modules.set(name, { instance, source });
      this.#schedules.add(instance);
      if (previous) this.#retire(previous.instance);
      this.deps.log.info(
        {
          module: name,
          version: prepared.manifest.version,
          source,
          replaced: previous !== undefined,
          ...(prepared.manifest.schedule ? { schedule: prepared.manifest.schedule } : {}),
        },
        previous ? 'module replaced' : 'module loaded',
      );
      return this.info(name)!;
    });
    // A module that did not start (or found no room) leaves no compiled code behind; the
    // caller still gets the rejection.
    installing.catch(() => this.#forgetUnusedCode());
    return installing;
  }

  /** How many compiled modules are kept: those of the modules loaded now. */
  get compiledModules(): number {
    return this.#compiled.size;
  }

  /** Unloads a module (its queued calls finish first); false when there was none. */
  remove(name: string): Promise<boolean> {
    return this.#serially(name, async () => {
      const entry = this.#modules.get(name);
      if (!entry) return false;
      await this.#schedules.remove(name);
      this.#modules.delete(name);
      this.#retire(entry.instance);
      this.deps.log.info({ module: name }, 'module unloaded');
      return true;
    });
  }

  /**
   * Makes the running modules what `modules.dir` holds (the update agent calls it after
   * switching releases): new and changed ones are loaded, the folder's removed ones unloaded.
   * Modules loaded through the API stay, unless the folder has one of the same name.
   */
  async reloadFromDirectory(): Promise<ReloadReport> {
    const report: ReloadReport = { loaded: [], unchanged: [], removed: [], refused: [] };
    let names: string[];
    try {
      const entries = await readdir(this.limits.dir, { withFileTypes: true });
      names = entries
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name)
        .sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      names = [];
    }
    for (const folder of names) {
      try {
        const dir = join(this.limits.dir, folder);
        const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as {
          name?: unknown;
          wasm?: unknown;
          sha256?: unknown;
        };
        if (manifest.name !== folder) {
          throw new Error(`the manifest in folder ${folder} names ${String(manifest.name)}`);
        }
        const current = this.#modules.get(folder);
        // The whole manifest, not only the hash: a release may change a quota or a capability alone.
        if (
          current?.source === 'directory' &&
          sameManifest(manifest, current.instance.prepared.manifest)
        ) {
          report.unchanged.push(folder);
          continue;
        }
        if (typeof manifest.wasm !== 'string' || manifest.wasm.includes('/')) {
          throw new Error('manifest.wasm must be a file name in the module folder');
        }
        await this.install(manifest, await readFile(join(dir, manifest.wasm)), 'directory');
        report.loaded.push(folder);
      } catch (error) {
        const reason = (error as Error).message;
        report.refused.push({ name: folder, reason });
        this.deps.log.error(
          { module: folder, dir: this.limits.dir },
          `module not loaded: ${reason}`,
        );
      }
    }
    for (const [name, entry] of [...this.#modules]) {
      if (entry.source === 'directory' && !names.includes(name)) {
        await this.remove(name);
        report.removed.push(name);
      }
    }
    return report;
  }

  /** Stops every module (calls in flight finish first). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#changes.values()]);
    await this.#schedules.removeAll();
    for (const [name, entry] of [...this.#modules]) {
      this.#modules.delete(name);
      this.#retire(entry.instance);
    }
    await Promise.allSettled([...this.#retiring]);
    this.#moduleLog.flush();
  }

  #retire(instance: ModuleInstance): void {
    this.#forgetUnusedCode();
    const stopping = instance.stop().catch((error: unknown) => {
      this.deps.log.warn({ module: instance.name, err: error }, 'module did not stop cleanly');
    });
    this.#retiring.add(stopping);
    void stopping.finally(() => this.#retiring.delete(stopping));
  }

  /**
   * Compiled code is kept for the modules loaded now only (a restart or a second load of one
   * does not compile again); a replaced, removed or refused module's goes with it, so swaps
   * over months do not pile up native code.
   */
  #forgetUnusedCode(): void {
    const inUse = new Set(
      [...this.#modules.values()].map((entry) => entry.instance.prepared.manifest.sha256),
    );
    for (const sha256 of [...this.#compiled.keys()]) {
      if (!inUse.has(sha256)) this.#compiled.delete(sha256);
    }
  }

  #serially<T>(name: string, change: () => Promise<T>): Promise<T> {
    const before = this.#changes.get(name) ?? Promise.resolve();
    const result = before.then(change, change);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.#changes.set(name, settled);
    void settled.then(() => {
      if (this.#changes.get(name) === settled) this.#changes.delete(name);
    });
    return result;
  }
}

/** Whether a manifest read from the folder is the one running (defaults filled in as at load). */
function sameManifest(input: unknown, running: ModuleManifest): boolean {
  try {
    return isDeepStrictEqual(parseManifest(input), running);
  } catch {
    return false;
  }
}
