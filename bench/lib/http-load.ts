import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MeasuredProcess } from './measure.js';

/** A port nobody listens on now: the kernel picks it, we release it at once. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port from the kernel');
  return address.port;
}

/**
 * Waits until a TCP connection to the port is accepted, trying every millisecond: the
 * moment the server listens. Fails if the process exits first or the deadline passes.
 */
export async function waitForListening(
  server: MeasuredProcess,
  port: number,
  host = '127.0.0.1',
  timeoutMs = 15_000,
): Promise<void> {
  let exited = false;
  void server.exited.then(
    () => (exited = true),
    () => (exited = true),
  );
  const deadline = Date.now() + timeoutMs;
  while (!(await accepts(host, port))) {
    if (exited) throw new Error(`pid ${server.pid} exited before listening on ${host}:${port}`);
    if (Date.now() > deadline)
      throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(1);
  }
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls a URL until it answers 200 (a server may answer 503 while it gets ready); returns the body. */
export async function waitForOk(url: string, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await fetch(url).catch(() => undefined);
    const body = await response?.text();
    if (response?.status === 200 && body !== undefined) return body;
    if (Date.now() > deadline) {
      throw new Error(
        `${url} did not answer 200 within ${timeoutMs} ms (last: ${response?.status})`,
      );
    }
    await sleep(20);
  }
}

export interface WrkResult {
  requestsPerSecond: number;
  p50Seconds: number;
  p99Seconds: number;
  requests: number;
  /** How long wrk loaded, by its own clock. */
  seconds: number;
  /** Non-2xx/3xx responses plus socket errors: any of these makes the run suspect. */
  errors: number;
}

export interface WrkOptions {
  url: string;
  connections: number;
  seconds: number;
  /** Pins wrk to this CPU with taskset. */
  cpu?: number;
}

/** Loads a URL with wrk (one thread) and reads its summary. */
export async function runWrk(options: WrkOptions): Promise<WrkResult> {
  const wrk = [
    'wrk',
    '-t1',
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    '--latency',
    options.url,
  ];
  const argv = options.cpu === undefined ? wrk : ['taskset', '-c', String(options.cpu), ...wrk];
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}: ${text}`)),
    );
  });
  return parseWrk(output);
}

export function parseWrk(output: string): WrkResult {
  const number = (pattern: RegExp): number | undefined => {
    const match = pattern.exec(output)?.[1];
    return match === undefined ? undefined : Number(match);
  };
  const requestsPerSecond = number(/^Requests\/sec:\s+([\d.]+)/m);
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s|m|h)$/m.exec(output);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m|h)$/m.exec(output);
  const requests = number(/^\s+(\d+) requests in/m);
  const duration = /^\s+\d+ requests in ([\d.]+)(us|ms|s|m|h),/m.exec(output);
  if (requestsPerSecond === undefined || !p50 || !p99 || requests === undefined || !duration) {
    throw new Error(`cannot read wrk's output:\n${output}`);
  }
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
    .exec(output)
    ?.slice(1)
    .reduce((sum, count) => sum + Number(count), 0);
  return {
    requestsPerSecond,
    p50Seconds: seconds(p50),
    p99Seconds: seconds(p99),
    requests,
    seconds: seconds(duration),
    errors: (number(/Non-2xx or 3xx responses: (\d+)/) ?? 0) + (socketErrors ?? 0),
  };
}

const UNIT_SECONDS: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };

function seconds(match: RegExpExecArray): number {
  return Number(match[1]) * UNIT_SECONDS[match[2]!]!;
}
