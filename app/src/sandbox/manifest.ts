import { createHash } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { Ajv } from 'ajv';
import type { OverrunPolicy } from '../runtime/scheduler.js';

/** A module's manifest (manifest.json beside its .wasm); see /work/notes/wasm-abi.md. */
export const ModuleName = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });

export const ModuleQuotas = Type.Object(
  {
    cpuMsPerCall: Type.Integer({ minimum: 1, default: 100 }),
    memoryBytes: Type.Integer({ minimum: 65536, default: 16 << 20 }),
    hostCallsPerSecond: Type.Integer({ minimum: 1, default: 200 }),
    ioBytesPerSecond: Type.Integer({ minimum: 1, default: 65536 }),
  },
  { additionalProperties: false, default: {} },
);
export type ModuleQuotas = Static<typeof ModuleQuotas>;

/** An export name as the call route takes it (POST /api/v1/modules/:name/call/:export). */
export const ExportName = Type.String({ minLength: 1, maxLength: 256 });

/** A module cannot have the host call it more often than every 10 ms, nor less than once a day. */
export const MIN_SCHEDULE_MS = 10;
export const MAX_SCHEDULE_MS = 86_400_000;
export const MAX_SCHEDULED_EXPORTS = 8;

/** An export the host calls every `everyMs` (no arguments), as the call route would. */
export const ScheduleEntry = Type.Object(
  {
    export: ExportName,
    everyMs: Type.Integer({ minimum: MIN_SCHEDULE_MS, maximum: MAX_SCHEDULE_MS }),
    // An enum, not a union of literals: ajv then names the values allowed.
    overrun: Type.Unsafe<OverrunPolicy>(
      Type.String({ enum: ['skip', 'catch-up'] satisfies OverrunPolicy[], default: 'skip' }),
    ),
  },
  { additionalProperties: false },
);
export type ScheduleEntry = Static<typeof ScheduleEntry>;

export const ModuleManifest = Type.Object(
  {
    name: ModuleName,
    version: Type.String({ minLength: 1, maxLength: 64 }),
    wasm: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\\.wasm$' }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    wasi: Type.Boolean({ default: false }),
    capabilities: Type.Object(
      {
        log: Type.Boolean({ default: false }),
        sensors: Type.Array(Type.String({ pattern: '^/', maxLength: 256 }), {
          maxItems: 64,
          default: [],
        }),
        uplink: Type.Optional(
          Type.Object(
            { schema: Type.Record(Type.String(), Type.Unknown()) },
            {
              additionalProperties: false,
            },
          ),
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    quotas: ModuleQuotas,
    schedule: Type.Optional(Type.Array(ScheduleEntry, { maxItems: MAX_SCHEDULED_EXPORTS })),
  },
  { additionalProperties: false },
);
export type ModuleManifest = Static<typeof ModuleManifest>;

export class ManifestError extends Error {
  override name = 'ManifestError';
}

// The manifest schema is ours and fixed; useDefaults fills the optional parts.
const ajv = new Ajv({ useDefaults: true, allErrors: false, strict: false, validateSchema: false });
const validateManifest = ajv.compile<ModuleManifest>(ModuleManifest);
/** Uplink schemas are the module's: checked against the meta-schema and compiled once at load. */
const schemaAjv = new Ajv({ strict: true, allErrors: false });

/** Validates a parsed manifest (a copy: defaults are filled in); throws ManifestError with the first fault. */
export function parseManifest(input: unknown): ModuleManifest {
  const manifest = structuredClone(input);
  if (!validateManifest(manifest)) {
    const error = validateManifest.errors?.[0];
    const where = error?.instancePath
      ? error.instancePath.slice(1).replace(/\//g, '.')
      : 'manifest';
    const extra =
      error?.keyword === 'additionalProperties'
        ? ` (${(error.params as { additionalProperty: string }).additionalProperty})`
        : error?.keyword === 'enum'
          ? ` (${(error.params as { allowedValues: unknown[] }).allowedValues.join(', ')})`
          : '';
    throw new ManifestError(`${where}: ${error?.message ?? 'is invalid'}${extra}`);
  }
  const scheduled = new Set<string>();
  for (const [index, entry] of (manifest.schedule ?? []).entries()) {
    if (scheduled.has(entry.export)) {
      throw new ManifestError(`schedule.${index}: export ${entry.export} is scheduled twice`);
    }
    scheduled.add(entry.export);
  }
  const schema = manifest.capabilities.uplink?.schema;
  if (schema) {
    try {
      schemaAjv.compile(schema);
    } catch (error) {
      throw new ManifestError(`capabilities.uplink.schema: ${(error as Error).message}`);
    } finally {
      // Ajv keeps what it compiles: the same $id would be refused at the next load (a hot swap).
      schemaAjv.removeSchema(schema);
    }
  }
  return manifest;
}

/** Refuses a binary whose SHA-256 is not the manifest's. */
export function checkSha256(manifest: ModuleManifest, wasm: Uint8Array): void {
  const actual = createHash('sha256').update(wasm).digest('hex');
  if (actual !== manifest.sha256) {
    throw new ManifestError(
      `sha256 mismatch: the manifest says ${manifest.sha256}, ${manifest.wasm} is ${actual}`,
    );
  }
}
