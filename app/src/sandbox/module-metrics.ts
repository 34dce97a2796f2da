import { Counter, Gauge, type Registry } from 'prom-client';

/** Per-module metrics; made unregistered, then added to the server's registry (/metrics). */
export class ModuleMetrics {
  readonly calls = new Counter({
    name: 'edge_module_calls_total',
    help: 'Calls of module exports',
    labelNames: ['module'] as const,
    registers: [],
  });
  readonly errors = new Counter({
    name: 'edge_module_call_errors_total',
    help: 'Calls that did not return a value, by kind (trap, cpu_quota, stuck, crash, bad_call, busy, failed)',
    labelNames: ['module', 'kind'] as const,
    registers: [],
  });
  readonly traps = new Counter({
    name: 'edge_module_traps_total',
    help: 'WebAssembly traps (unreachable, out-of-bounds access, stack overflow...)',
    labelNames: ['module'] as const,
    registers: [],
  });
  readonly cpuSeconds = new Counter({
    name: 'edge_module_cpu_seconds_total',
    help: 'CPU time of module calls in their worker threads (wall time where /proc cannot tell)',
    labelNames: ['module'] as const,
    registers: [],
  });
  readonly memoryHighWater = new Gauge({
    name: 'edge_module_memory_high_water_bytes',
    help: 'The largest size the module memory has reached',
    labelNames: ['module'] as const,
    registers: [],
  });
  readonly quotaRefusals = new Counter({
    name: 'edge_module_quota_refusals_total',
    help: 'Refusals by quota (host_calls, io_bytes, cpu)',
    labelNames: ['module', 'quota'] as const,
    registers: [],
  });
  readonly restarts = new Counter({
    name: 'edge_module_restarts_total',
    help: 'Worker restarts after a watchdog termination or a crash',
    labelNames: ['module'] as const,
    registers: [],
  });
  readonly uplinks = new Counter({
    name: 'edge_module_uplinks_total',
    help: 'Uplinks by outcome (sent, failed, dropped)',
    labelNames: ['module', 'outcome'] as const,
    registers: [],
  });

  readonly logDropped = new Counter({
    name: 'edge_module_log_dropped_total',
    help: 'Module log lines dropped over the device budget (modules.maxLogLinesPerSecond)',
    labelNames: ['module'] as const,
    registers: [],
  });

  registerIn(registry: Registry): void {
    for (const metric of [
      this.calls,
      this.errors,
      this.traps,
      this.cpuSeconds,
      this.memoryHighWater,
      this.quotaRefusals,
      this.restarts,
      this.uplinks,
      this.logDropped,
    ]) {
      // prom-client's typings leave out the name the metric object carries.
      const { name } = metric as unknown as { name: string };
      if (!registry.getSingleMetric(name)) registry.registerMetric(metric);
    }
  }

  readonly #highWater = new Map<string, number>();

  highWater(module: string, bytes: number): void {
    if (bytes <= (this.#highWater.get(module) ?? 0)) return;
    this.#highWater.set(module, bytes);
    this.memoryHighWater.set({ module }, bytes);
  }
}
