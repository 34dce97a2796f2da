import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  BadCall,
  ModuleApiLocked,
  ModuleApiUnauthorized,
  ModuleNotFound,
  ModulesDisabled,
} from '../sandbox/errors.js';
import { ExportName, ModuleQuotas, ScheduleEntry } from '../sandbox/manifest.js';
import type { ModuleRegistry } from '../sandbox/module-registry.js';
import type { CallInput } from '../sandbox/protocol.js';

const NameParams = {
  type: 'object',
  properties: { name: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' } },
  required: ['name'],
} as const;

const CallParams = {
  type: 'object',
  properties: {
    name: NameParams.properties.name,
    export: ExportName,
  },
  required: ['name', 'export'],
} as const;

const ValueTypes = { type: 'array', items: { type: 'string' } } as const;
const ModuleInfo = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    version: { type: 'string' },
    sha256: { type: 'string' },
    source: { type: 'string', enum: ['api', 'directory'] },
    wasi: { type: 'boolean' },
    state: { type: 'string' },
    restarts: { type: 'integer' },
    lastFailure: { type: 'string', nullable: true },
    memoryBytes: { type: 'integer' },
    memoryMaxBytes: { type: 'integer' },
    // The manifest's own schemas: the listing shows them as the manifest gave them.
    quotas: ModuleQuotas,
    schedule: { type: 'array', items: ScheduleEntry },
    exports: {
      type: 'array',
      items: {
        type: 'object',
        properties: { name: { type: 'string' }, params: ValueTypes, results: ValueTypes },
      },
    },
  },
} as const;

/** A module: its manifest, and its .wasm in base64 (one JSON body, no multipart). */
const PutBody = {
  type: 'object',
  properties: {
    manifest: { type: 'object' },
    wasm: { type: 'string', pattern: '^[A-Za-z0-9+/]*={0,2}$' },
  },
  required: ['manifest', 'wasm'],
  additionalProperties: false,
} as const;

/** Numeric arguments (an i64 may be a decimal string), or raw bytes (application/octet-stream). */
const CallBody = {
  type: 'object',
  properties: {
    args: {
      type: 'array',
      maxItems: 64,
      items: { anyOf: [{ type: 'number' }, { type: 'string', pattern: '^-?\\d{1,20}$' }] },
    },
  },
  additionalProperties: false,
} as const;

const CallResponse = {
  type: 'object',
  properties: {
    result: { anyOf: [{ type: 'number' }, { type: 'string' }, { type: 'null' }] },
    cpuMs: { type: 'number' },
  },
} as const;

/**
 * The WASM module sandbox: list, load or replace, unload and call modules, without restarting
 * the server. Everything but reading needs the bearer token of `modules.apiTokenFile`.
 */
export const modulesRoutes: FastifyPluginAsync = async (app) => {
  const { apiTokenFile, maxWasmBytes } = app.config.modules;
  const registry = (): ModuleRegistry => {
    if (!app.modules) throw new ModulesDisabled();
    return app.modules;
  };

  // Raw input bytes for a call (this plugin only).
  app.addContentTypeParser(
    'application/octet-stream',
    { parseAs: 'buffer' },
    (_request, body, done) => done(null, body),
  );

  const authenticate = async (request: FastifyRequest): Promise<void> => {
    let expected: string;
    try {
      expected = (await readFile(apiTokenFile, 'utf8')).trim();
    } catch {
      throw new ModuleApiLocked(apiTokenFile);
    }
    if (!expected) throw new ModuleApiLocked(apiTokenFile);
    const given = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1] ?? '';
    // Compared as hashes: constant time, whatever the lengths.
    const digest = (text: string) => createHash('sha256').update(text).digest();
    if (!timingSafeEqual(digest(given), digest(expected))) throw new ModuleApiUnauthorized();
  };

  app.get(
    '/api/v1/modules',
    {
      schema: {
        response: {
          200: { type: 'object', properties: { modules: { type: 'array', items: ModuleInfo } } },
        },
      },
    },
    () => ({ modules: registry().list() }),
  );

  app.get<{ Params: { name: string } }>(
    '/api/v1/modules/:name',
    { schema: { params: NameParams, response: { 200: ModuleInfo } } },
    (request) => {
      const info = registry().info(request.params.name);
      if (!info) throw new ModuleNotFound(request.params.name);
      return info;
    },
  );

  app.put<{ Params: { name: string }; Body: { manifest: Record<string, unknown>; wasm: string } }>(
    '/api/v1/modules/:name',
    {
      schema: { params: NameParams, body: PutBody, response: { 200: ModuleInfo, 201: ModuleInfo } },
      bodyLimit: Math.ceil((maxWasmBytes * 4) / 3) + 256 * 1024,
      preHandler: authenticate,
    },
    async (request, reply) => {
      const { name } = request.params;
      if (request.body.manifest.name !== name) {
        throw new BadCall(
          `PUT ${name}`,
          `the manifest names ${String(request.body.manifest.name)}`,
        );
      }
      const existed = registry().info(name) !== undefined;
      const info = await registry().install(
        request.body.manifest,
        Buffer.from(request.body.wasm, 'base64'),
        'api',
      );
      return reply.code(existed ? 200 : 201).send(info);
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/api/v1/modules/:name',
    { schema: { params: NameParams }, preHandler: authenticate },
    async (request, reply) => {
      if (!(await registry().remove(request.params.name))) {
        throw new ModuleNotFound(request.params.name);
      }
      return reply.code(204).send();
    },
  );

  app.post<{
    Params: { name: string; export: string };
    Body: { args?: Array<number | string> } | Buffer;
  }>(
    '/api/v1/modules/:name/call/:export',
    {
      schema: {
        params: CallParams,
        // Bytes are the export's input as they are; JSON bodies are checked.
        body: {
          content: {
            'application/json': { schema: CallBody },
            'application/octet-stream': { schema: {} },
          },
        },
        response: { 200: CallResponse },
      },
      preHandler: authenticate,
    },
    async (request) => {
      const body = request.body;
      const input: CallInput = Buffer.isBuffer(body)
        ? { kind: 'bytes', bytes: new Uint8Array(body) }
        : { kind: 'args', args: body?.args ?? [] };
      const { value, cpuMs } = await registry().call(
        request.params.name,
        request.params.export,
        input,
      );
      return { result: value, cpuMs };
    },
  );
};
