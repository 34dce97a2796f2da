import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';

/**
 * A small HTTP server holding one file with Range, ETag and If-Range, that can cut the
 * connection after a number of bytes or send more than the file: what a device meets.
 */
export interface RangeServer {
  url: string;
  requests: Array<{ range?: string; ifRange?: string }>;
  /** Cut each response after this many body bytes (undefined: never). */
  cutAfter: (requestNumber: number) => number | undefined;
  extraBytes: number;
  /** After a cut, keep the connection open and silent (a dead link) instead of closing it. */
  stallOnCut: boolean;
  close(): Promise<void>;
}

export async function startRangeServer(
  content: Buffer,
  etag = `"${createHash('sha256').update(content).digest('hex')}"`,
): Promise<RangeServer> {
  const state: RangeServer = {
    url: '',
    requests: [],
    cutAfter: () => undefined,
    extraBytes: 0,
    stallOnCut: false,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  const server: Server = createServer((request, response) => {
    const range = request.headers.range;
    const ifRange = request.headers['if-range'] as string | undefined;
    state.requests.push({ range, ifRange });
    let start = 0;
    const ranged = /^bytes=(\d+)-$/.exec(range ?? '');
    if (ranged && (ifRange === undefined || ifRange === etag)) start = Number(ranged[1]);
    let body = content.subarray(start);
    if (state.extraBytes) body = Buffer.concat([body, Buffer.alloc(state.extraBytes, 7)]);
    response.setHeader('etag', etag);
    response.setHeader('accept-ranges', 'bytes');
    if (start > 0) {
      response.statusCode = 206;
      response.setHeader('content-range', `bytes ${start}-${content.length - 1}/${content.length}`);
    }
    response.setHeader('content-length', body.length);
    const cut = state.cutAfter(state.requests.length);
    if (cut === undefined || cut >= body.length) {
      response.end(body);
      return;
    }
    response.write(body.subarray(0, cut), () => {
      if (!state.stallOnCut) response.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  state.url = `http://127.0.0.1:${port}/file`;
  return state;
}
