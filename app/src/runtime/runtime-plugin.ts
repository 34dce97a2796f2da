import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import type { Server as TlsServer } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { Counter, Gauge, type Registry } from 'prom-client';
import { loadShedding } from './load-shedding.js';
import { expectedHeapLimitBytes, memoryBudget, type MemoryBudget } from './memory-budget.js';
import {
  MemoryPressureMonitor,
  type MemoryPressure,
  type PressureChange,
} from './memory-pressure.js';
import {
  KernelMemorySource,
  readMemoryFacts,
  type MemoryFacts,
  type MemoryReadingSource,
} from './memory-sources.js';
import { saveClockFloor } from '../clock-floor.js';
import { Scheduler } from './scheduler.js';
import { CertificateError, type TlsCertificates } from './tls.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** "Is memory short?": `isHigh()`, and 'change' events once per transition. */
    memoryPressure: MemoryPressure;
    /** Periodic tasks at absolute deadlines, with their jitter at /metrics. */
    scheduler: Scheduler;
    memoryBudget: MemoryBudget;
  }
}

/** What tests replace: the kernel's memory facts and readings, and the clock-bound scheduler. */
export interface RuntimeDeps {
  facts?: MemoryFacts;
  pressureSource?: MemoryReadingSource;
  scheduler?: Scheduler;
  tls?: TlsCertificates | undefined;
}

const MiB = 1024 * 1024;

/**
 * The runtime around the routes: the memory budget (logged and exported), the memory
 * pressure monitor and the load shedding it drives, the periodic task scheduler, TLS
 * certificate reloads, and the runtime's metrics. Registered after the metrics plugin.
 */
const runtimePluginBody: FastifyPluginAsync<RuntimeDeps> = async (app, deps) => {
  const { memory } = app.config;
  const roots = { procRoot: memory.procRoot, cgroupRoot: memory.cgroupRoot };
  const facts = deps.facts ?? readMemoryFacts(roots);
  for (const reason of facts.fallbacks) app.log.info(`memory: ${reason}; using /proc/meminfo`);
  const budget = memoryBudget(facts, { heapMiB: memory.heapMiB });
  const heapLimitBytes = getHeapStatistics().heap_size_limit;
  const applied = Math.abs(heapLimitBytes - expectedHeapLimitBytes(budget)) < MiB;
  app.log.info(
    {
      memoryBudget: {
        limitBytes: budget.limitBytes,
        limitSource: budget.limitSource,
        oldSpaceMiB: budget.oldSpaceMiB,
        semiSpaceMiB: budget.semiSpaceMiB ?? 'default',
        nodeFlags: budget.nodeFlags.join(' '),
        heapSizeLimitBytes: heapLimitBytes,
        applied,
      },
      reasons: budget.reasons,
    },
    applied
      ? 'memory budget in effect'
      : 'memory budget NOT in effect: node was started without --print-node-flags',
  );
  app.decorate('memoryBudget', budget);

  const scheduler =
    deps.scheduler ??
    new Scheduler({
      onError: (task, error) => app.log.error({ err: error, task }, 'periodic task failed'),
      onPriority: (task, { tid, applied, refused }) => {
        if (refused.length === 0)
          app.log.info(
            { task, tid, priority: applied },
            `task ${task}: worker thread at ${applied}`,
          );
        else
          app.log.warn(
            { task, tid, priority: applied, refused },
            `task ${task}: worker thread at ${applied}, refused ${refused.join('; ')}`,
          );
      },
    });
  app.decorate('scheduler', scheduler);

  const source =
    deps.pressureSource ??
    new KernelMemorySource(roots, facts.cgroup, (reason) => app.log.info(`memory: ${reason}`));
  const monitor = new MemoryPressureMonitor(source, {
    usedEnterPercent: memory.usedEnterPercent,
    usedExitPercent: memory.usedExitPercent,
    stallEnterPercent: memory.stallEnterPercent,
    stallExitPercent: memory.stallExitPercent,
    heapEnterPercent: memory.heapEnterPercent,
    heapExitPercent: memory.heapExitPercent,
  });
  app.decorate('memoryPressure', monitor);

  const registry = app.metricsRegistry;
  registerBudgetMetrics(budget, heapLimitBytes, registry);
  const changes = new Counter({
    name: 'edge_memory_pressure_changes_total',
    help: 'Memory pressure transitions, by the level entered',
    labelNames: ['level'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'edge_memory_pressure',
    help: 'Memory pressure: 1 while memory is short (non-essential routes shed), else 0',
    registers: [registry],
    collect() {
      this.set(monitor.isHigh() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'edge_memory_used_ratio',
    help: 'Memory in use against the limit that applies, at the last pressure check',
    labelNames: ['source'] as const,
    registers: [registry],
    collect() {
      const sample = monitor.lastSample;
      this.reset();
      if (sample) this.set({ source: sample.source }, sample.usedBytes / sample.limitBytes);
    },
  });
  new Gauge({
    name: 'edge_memory_stall_percent',
    help: 'PSI memory "some avg10" in percent at the last pressure check (0 without PSI)',
    registers: [registry],
    collect() {
      const stall = monitor.lastSample?.stallPercent;
      this.reset();
      if (stall !== undefined) this.set(stall);
    },
  });
  registerLoopMetrics(registry);
  registerTaskMetrics(scheduler, registry);

  monitor.on('change', ({ level, sample }: PressureChange) => {
    changes.inc({ level });
    const figures = {
      usedPercent: Number(sample.usedPercent.toFixed(1)),
      heapPercent: Number(sample.heapPercent.toFixed(1)),
      stallPercent: sample.stallPercent,
      source: sample.source,
    };
    if (level === 'high') {
      app.log.warn({ memory: figures, causes: sample.causes }, 'memory pressure: shedding load');
      // Idle keep-alive sockets hold buffers for nobody (http and https servers have the call).
      (app.server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
    } else {
      app.log.info({ memory: figures }, 'memory pressure over: serving every route');
    }
  });

  await app.register(loadShedding, {
    pressure: monitor,
    retryAfterSeconds: memory.retryAfterSeconds,
    registry,
  });

  if (deps.tls) scheduleTls(app, deps.tls, scheduler);
  const saveFloor = clockFloorSaver(app);
  scheduler.add({
    name: 'clock-floor',
    periodMs: CLOCK_FLOOR_SAVE_MS,
    overrun: 'skip',
    run: saveFloor,
  });

  app.addHook('onReady', async () => {
    await monitor.check();
    monitor.start(memory.pressureCheckMs, (error) =>
      app.log.error({ err: error }, 'memory pressure check failed'),
    );
  });
  app.addHook('onReady', async () => saveFloor());
  app.addHook('onClose', async () => {
    monitor.stop();
    await scheduler.stop();
    saveFloor();
  });
};

/** How often the clock floor follows the clock: a power cut loses at most this much. */
const CLOCK_FLOOR_SAVE_MS = 3_600_000;

/**
 * Notes the time in the clock floor file; never throws (a read-only or full /data must not
 * stop the server). A host without the file's folder is told once, at debug.
 */
function clockFloorSaver(app: FastifyInstance): () => void {
  const path = app.config.boot.clockFloorFile;
  let toldNoDirectory = false;
  return () => {
    try {
      if (saveClockFloor(path) === 'no-directory' && !toldNoDirectory) {
        toldNoDirectory = true;
        app.log.debug(`clock floor: no folder for ${path}; the time is not noted`);
      }
    } catch (error) {
      app.log.warn({ err: error }, `clock floor: cannot note the time in ${path}`);
    }
  };
}

/** Certificate reloads and ticket key rotation, as periodic tasks; the server's context is swapped in place. */
function scheduleTls(app: FastifyInstance, tls: TlsCertificates, scheduler: Scheduler): void {
  tls.attach(app.server as unknown as TlsServer);
  const pair = tls.current;
  app.log.info(
    { subject: pair.subject, validTo: pair.validTo, alpn: tls.alpnProtocols },
    'TLS certificate in use',
  );
  const reloads = new Counter({
    name: 'edge_tls_certificate_reloads_total',
    help: 'Certificate reloads, by result (reloaded, refused: the old one kept serving)',
    labelNames: ['result'] as const,
    registers: [app.metricsRegistry],
  });
  scheduler.add({
    name: 'tls-certificate-reload',
    periodMs: app.config.tls.reloadCheckSeconds * 1000,
    overrun: 'skip',
    run: () => {
      try {
        const outcome = tls.reloadIfChanged();
        if (outcome.result === 'unchanged') return;
        reloads.inc({ result: 'reloaded' });
        app.log.info(
          { subject: outcome.pair.subject, validTo: outcome.pair.validTo },
          'TLS certificate reloaded',
        );
      } catch (error) {
        if (!(error instanceof CertificateError)) throw error;
        reloads.inc({ result: 'refused' });
        app.log.warn(
          { reason: error.message, serving: tls.current.fingerprint256 },
          'TLS certificate reload refused: the previous certificate keeps serving',
        );
      }
    },
  });
  scheduler.add({
    name: 'tls-ticket-key-rotation',
    periodMs: app.config.tls.ticketKeyRotationHours * 3_600_000,
    overrun: 'skip',
    run: () => tls.rotateTicketKeys(),
  });
}

function registerBudgetMetrics(
  budget: MemoryBudget,
  heapLimitBytes: number,
  registry: Registry,
): void {
  const limit = new Gauge({
    name: 'edge_memory_limit_bytes',
    help: 'The memory this process may use (cgroup limit or MemTotal), by where it came from',
    labelNames: ['source'] as const,
    registers: [registry],
  });
  limit.set({ source: budget.limitSource }, budget.limitBytes);
  const planned = new Gauge({
    name: 'edge_heap_budget_bytes',
    help: 'The V8 heap sizes derived from the memory limit (semi_space 0: V8 default)',
    labelNames: ['space'] as const,
    registers: [registry],
  });
  planned.set({ space: 'old' }, budget.oldSpaceMiB * MiB);
  planned.set({ space: 'semi' }, (budget.semiSpaceMiB ?? 0) * MiB);
  new Gauge({
    name: 'edge_v8_heap_size_limit_bytes',
    help: "V8's heap ceiling in effect (heap_size_limit): the budget's when node got its flags",
    registers: [registry],
  }).set(heapLimitBytes);
}

/**
 * What prom-client's default metrics lack: event-loop utilisation (the share of time the
 * loop was busy). Lag percentiles and GC pauses by kind come from its defaults already.
 */
function registerLoopMetrics(registry: Registry): void {
  let last = performance.eventLoopUtilization();
  new Gauge({
    name: 'edge_event_loop_utilization',
    help: 'Share of time the event loop was busy since the previous scrape (0..1)',
    registers: [registry],
    collect() {
      const now = performance.eventLoopUtilization();
      this.set(performance.eventLoopUtilization(now, last).utilization);
      last = now;
    },
  });
}

/** Each periodic task's runs and its distance from its deadlines (p50, p99, max since start). */
function registerTaskMetrics(scheduler: Scheduler, registry: Registry): void {
  new Gauge({
    name: 'edge_task_jitter_seconds',
    help: 'Distance of periodic task runs from their deadlines, since start',
    labelNames: ['task', 'thread', 'quantile'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const task of scheduler.stats()) {
        const labels = { task: task.name, thread: task.thread };
        this.set({ ...labels, quantile: '0.5' }, task.p50Seconds);
        this.set({ ...labels, quantile: '0.99' }, task.p99Seconds);
        this.set({ ...labels, quantile: '1' }, task.maxSeconds);
      }
    },
  });
  new Gauge({
    name: 'edge_task_runs',
    help: 'Periodic task runs since start, by outcome (run, overrun, skipped, failed)',
    labelNames: ['task', 'outcome'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const task of scheduler.stats()) {
        this.set({ task: task.name, outcome: 'run' }, task.runs);
        this.set({ task: task.name, outcome: 'overrun' }, task.overruns);
        this.set({ task: task.name, outcome: 'skipped' }, task.skipped);
        this.set({ task: task.name, outcome: 'failed' }, task.failures);
      }
    },
  });
}

export const runtimePlugin = fastifyPlugin(runtimePluginBody, {
  name: 'runtime',
  dependencies: ['metrics'],
});
