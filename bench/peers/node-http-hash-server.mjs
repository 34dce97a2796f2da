// The framework floor: plain node:http doing the edge server's GET /api/v1/firmware/hash, no more.
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { createServer } from 'node:http';
import process from 'node:process';

const slotPath = process.env.EDGE_FIRMWARE_SLOT_PATH;
const host = process.env.EDGE_SERVER_HOST ?? '127.0.0.1';
const port = Number(process.env.EDGE_SERVER_PORT ?? 8080);
if (!slotPath) {
  process.stderr.write('node-http-hash-server: set EDGE_FIRMWARE_SLOT_PATH\n');
  process.exit(64);
}

/** Streams the file through SHA-256 in 1 MiB reads into one buffer, as the edge server does. */
async function sha256Of(path) {
  const file = await open(path, 'r');
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) return hash.digest('hex');
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
}

/** The answer once the slot is hashed; 503 until then, as the edge server does. */
let body;
sha256Of(slotPath).then(
  (hash) => (body = Buffer.from(JSON.stringify({ hash }))),
  (error) => {
    process.stderr.write(`node-http-hash-server: ${error.message}\n`);
    process.exit(1);
  },
);

createServer((request, response) => {
  if (request.method !== 'GET' || request.url !== '/api/v1/firmware/hash') {
    response.writeHead(404).end();
  } else if (body === undefined) {
    response.writeHead(503, { 'retry-after': '2' }).end();
  } else {
    response
      .writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': body.length,
      })
      .end(body);
  }
}).listen(port, host);

process.on('SIGTERM', () => process.exit(0));
