import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const Milliseconds = (defaultValue: number, description: string) =>
  Type.Integer({ minimum: 1, maximum: 3_600_000, default: defaultValue, description });

export const ConfigSchema = Type.Object(
  {
    server: Type.Object(
      {
        host: Type.String({ minLength: 1, default: '0.0.0.0' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
        requestTimeoutMs: Milliseconds(30_000, 'whole request, headers and body'),
        headersTimeoutMs: Milliseconds(10_000, 'request headers'),
        keepAliveTimeoutMs: Milliseconds(5_000, 'idle keep-alive connection'),
        bodyLimitBytes: Type.Integer({
          minimum: 1024,
          maximum: 64 * 1024 * 1024,
          default: 1 << 20,
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    log: Type.Object(
      {
        level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) =>
            Type.Literal(l),
          ),
          { default: 'info' },
        ),
        /** One line per request; off by default to spare a device's storage. */
        requests: Type.Boolean({ default: false }),
      },
      { additionalProperties: false, default: {} },
    ),
    firmware: Type.Object(
      {
        /** The running root slot: "auto" takes root= from /proc/cmdline; a file on a dev host. */
        slotPath: Type.String({ minLength: 1, default: 'auto' }),
      },
      { additionalProperties: false, default: {} },
    ),
    boot: Type.Object(
      {
        /** Where the boot partition (p1, with the A/B state files) is mounted. */
        stateDir: Type.String({ minLength: 1, default: '/boot' }),
        /** Marks a committed slot for the trial watchdog (usr/sbin/edge-trial-watchdog). */
        commitMarker: Type.String({ minLength: 1, default: '/run/edge/committed' }),
        /** The clock floor rcS sets the clock forward to at boot (app/src/clock-floor.ts): its mtime. */
        clockFloorFile: Type.String({ minLength: 1, default: '/data/edge/clock' }),
      },
      { additionalProperties: false, default: {} },
    ),
    ota: Type.Object(
      {
        /** The update server, e.g. http://10.0.2.2:8443; empty: no update agent. */
        serverUrl: Type.String({ default: '' }),
        /** The fleet token used once, to enrol the device. */
        fleetTokenFile: Type.String({ minLength: 1, default: '/data/edge/fleet-token' }),
        /** The agent's state, device key, TUF cache and downloads (on the data partition). */
        dataDir: Type.String({ minLength: 1, default: '/data/edge' }),
        /** The TUF root baked into the image: the trust anchor. */
        trustedRootPath: Type.String({ minLength: 1, default: '/etc/edge/tuf-root.json' }),
        /** What the running slot holds: {"version": ...}. */
        releaseFile: Type.String({ minLength: 1, default: '/etc/edge/release.json' }),
        /** The board name the update server knows this device by; "auto" reads the device tree. */
        board: Type.String({ minLength: 1, default: 'auto' }),
        deviceId: Type.String({ default: '' }),
        /** The standby slot; "auto" is the running slot's disk, the other slot partition. */
        standbySlotPath: Type.String({ minLength: 1, default: 'auto' }),
        checkInSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 60 }),
        /** Download limit in bytes a second (0: none), and the burst it may save up. */
        bandwidthBytesPerSecond: Type.Integer({ minimum: 0, default: 0 }),
        bandwidthBurstBytes: Type.Integer({ minimum: 1, default: 1 << 20 }),
        /** A download connection silent this long is dropped and resumed (a dead link). */
        stallTimeoutSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 30 }),
        /** After an update, how long the new slot has to become healthy before it is left uncommitted. */
        healthDeadlineSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 90 }),
        rebootCommand: Type.String({ minLength: 1, default: 'reboot' }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** The heap ceiling and memory pressure (app/src/runtime): see memory-budget.ts. */
    memory: Type.Object(
      {
        /** The V8 old generation in MiB; 0 derives it from the cgroup limit or MemTotal. */
        heapMiB: Type.Integer({ minimum: 0, maximum: 65_536, default: 0 }),
        /** Where meminfo and the cgroup files are read: other roots are for tests. */
        procRoot: Type.String({ minLength: 1, default: '/proc' }),
        cgroupRoot: Type.String({ minLength: 1, default: '/sys/fs/cgroup' }),
        pressureCheckMs: Milliseconds(1000, 'how often memory pressure is checked'),
        /** Pressure starts at or above an enter threshold and ends below every exit threshold. */
        usedEnterPercent: Type.Number({ minimum: 1, maximum: 100, default: 90 }),
        usedExitPercent: Type.Number({ minimum: 1, maximum: 100, default: 80 }),
        stallEnterPercent: Type.Number({ minimum: 0, maximum: 100, default: 20 }),
        stallExitPercent: Type.Number({ minimum: 0, maximum: 100, default: 5 }),
        heapEnterPercent: Type.Number({ minimum: 1, maximum: 100, default: 90 }),
        heapExitPercent: Type.Number({ minimum: 1, maximum: 100, default: 75 }),
        /** Retry-After of the 503 that non-essential routes answer under pressure. */
        retryAfterSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 5 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** HTTPS (TLS 1.2+): off by default, plain HTTP/1.1. */
    tls: Type.Object(
      {
        enabled: Type.Boolean({ default: false }),
        certFile: Type.String({ minLength: 1, default: '/data/edge/tls/cert.pem' }),
        keyFile: Type.String({ minLength: 1, default: '/data/edge/tls/key.pem' }),
        /** Offer HTTP/2 by ALPN beside HTTP/1.1. */
        http2: Type.Boolean({ default: false }),
        /** How often the files are checked for a new certificate (swapped without a restart). */
        reloadCheckSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 30 }),
        ticketKeyRotationHours: Type.Integer({ minimum: 1, maximum: 720, default: 12 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** The WASM module sandbox (app/src/sandbox): where modules come from, and device-wide ceilings. */
    modules: Type.Object(
      {
        /** Loaded at start and on reloadFromDirectory(); an absent folder holds no modules. */
        dir: Type.String({ minLength: 1, default: '/data/edge/apps/current/modules' }),
        /** The bearer token of the module API; no file: changes are refused. */
        apiTokenFile: Type.String({ minLength: 1, default: '/data/edge/api-token' }),
        /** Where sensor paths are read from: "/" on a device, a folder in tests. */
        sensorRoot: Type.String({ minLength: 1, default: '/' }),
        /** Sensor paths (files or folders) any module may be granted; set in the config file. */
        sensorAllow: Type.Array(Type.String({ pattern: '^/' }), {
          default: ['/sys/class/hwmon', '/sys/class/thermal'],
        }),
        maxModules: Type.Integer({ minimum: 0, maximum: 1000, default: 16 }),
        maxWasmBytes: Type.Integer({ minimum: 1024, default: 8 << 20 }),
        /** Ceilings of every module's quotas. */
        maxCpuMsPerCall: Type.Integer({ minimum: 1, maximum: 600_000, default: 1000 }),
        /** The shortest period a manifest's schedule may ask for (each run is a call through the main thread). */
        minScheduleMs: Type.Integer({ minimum: 10, maximum: 86_400_000, default: 1000 }),
        maxMemoryBytes: Type.Integer({ minimum: 65536, default: 64 << 20 }),
        maxHostCallsPerSecond: Type.Integer({ minimum: 1, default: 1000 }),
        maxIoBytesPerSecond: Type.Integer({ minimum: 1, default: 1 << 20 }),
        /** Module log lines (edge_log, WASI output, undelivered uplinks) per second, all modules together. */
        maxLogLinesPerSecond: Type.Integer({ minimum: 1, default: 100 }),
        /** Consecutive failures (watchdog, crash) after which a module is marked failed. */
        maxFailures: Type.Integer({ minimum: 1, maximum: 100, default: 5 }),
        /** The first restart's delay; each further one doubles it, up to 30 s. */
        restartBackoffMs: Type.Integer({ minimum: 0, maximum: 60_000, default: 200 }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

export type Config = Static<typeof ConfigSchema>;

/** Where settings come from, lowest precedence first. */
export interface ConfigSources {
  /** A JSON file; an explicitly named file must exist, the default one may not. */
  file?: { path: string; required: boolean };
  env?: NodeJS.ProcessEnv;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export const ENV_PREFIX = 'EDGE_';
export const DEFAULT_CONFIG_FILE = '/etc/edge/edge-server.json';

/** Builds the configuration: defaults, then the file, then EDGE_* variables; validated. */
export function loadConfig(sources: ConfigSources = {}): Config {
  const provenance = new Map<string, string>();
  const merged: Record<string, unknown> = {};
  if (sources.file) {
    const fromFile = readConfigFile(sources.file.path, sources.file.required);
    for (const [key, value] of leaves(fromFile)) {
      setPath(merged, key, value);
      provenance.set(key, `in ${sources.file.path}`);
    }
  }
  for (const { key, envName, schema } of settingLeaves(ConfigSchema)) {
    const raw = sources.env?.[envName];
    if (raw === undefined) continue;
    setPath(merged, key, coerceEnvValue(raw, schema));
    provenance.set(key, `from ${envName}`);
  }
  if (!validate(merged)) {
    const error = validate.errors?.[0];
    throw new ConfigError(describe(error, provenance));
  }
  return merged;
}

// The schema is ours and fixed: skip checking it against the meta-schema at every start.
const ajv = new Ajv({ useDefaults: true, allErrors: false, strict: false, validateSchema: false });
const validate = ajv.compile<Config>(ConfigSchema);

function readConfigFile(path: string, required: boolean): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !required) return {};
    throw new ConfigError(`cannot read config file ${path}: ${code ?? String(error)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** Dotted key and value of every leaf of a parsed file; unknown keys are kept for the schema to refuse. */
function* leaves(object: Record<string, unknown>, prefix = ''): Generator<[string, unknown]> {
  for (const [name, value] of Object.entries(object)) {
    const key = prefix + name;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      yield* leaves(value as Record<string, unknown>, `${key}.`);
    } else {
      yield [key, value];
    }
  }
}

/** Every setting of the schema with the environment variable that sets it. */
export function* settingLeaves(
  schema: TSchema,
  prefix = '',
): Generator<{ key: string; envName: string; schema: TSchema }> {
  for (const [name, child] of Object.entries(schema.properties as Record<string, TSchema>)) {
    const key = prefix + name;
    if (child.type === 'object') yield* settingLeaves(child, `${key}.`);
    else yield { key, envName: envNameOf(key), schema: child };
  }
}

export function envNameOf(key: string): string {
  return (
    ENV_PREFIX +
    key
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .replace(/\./g, '_')
      .toUpperCase()
  );
}

function coerceEnvValue(raw: string, schema: TSchema): unknown {
  if (schema.type === 'integer' || schema.type === 'number') {
    return raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  if (schema.type === 'boolean') {
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
  }
  return raw;
}

function setPath(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== 'object' || next === null) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]!] = value;
}

function describe(error: ErrorObject | undefined, provenance: Map<string, string>): string {
  if (!error) return 'invalid configuration';
  const parentKey = error.instancePath.slice(1).replace(/\//g, '.');
  if (error.keyword === 'additionalProperties') {
    const extra = (error.params as { additionalProperty: string }).additionalProperty;
    const key = parentKey ? `${parentKey}.${extra}` : extra;
    return `${key} ${provenance.get(key) ?? ''}: unknown setting`.replace(' :', ':');
  }
  const where = provenance.get(parentKey);
  const message =
    error.keyword === 'anyOf' || error.keyword === 'const'
      ? `must be one of ${allowedValues(parentKey)}`
      : (error.message ?? 'is invalid');
  return `${parentKey || 'config'}${where ? ` ${where}` : ''}: ${message}`;
}

function allowedValues(key: string): string {
  const leaf = [...settingLeaves(ConfigSchema)].find((l) => l.key === key);
  const options = (leaf?.schema.anyOf as TSchema[] | undefined)?.map((s) => String(s.const));
  return options ? options.join(', ') : 'the allowed values';
}
