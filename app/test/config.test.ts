import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, envNameOf, loadConfig } from '../src/config.js';
import { scratchDir } from '../../test/scratch.js';

function configFile(content: string): string {
  const path = join(scratchDir('edge-config'), 'edge-server.json');
  writeFileSync(path, content);
  return path;
}

test('defaults apply when nothing is set', (t) => {
  const config = loadConfig();
  t.is(config.server.port, 8080);
  t.is(config.server.host, '0.0.0.0');
  t.is(config.log.level, 'info');
  t.is(config.firmware.slotPath, 'auto');
  t.true(config.server.headersTimeoutMs <= config.server.requestTimeoutMs);
});

test('the file overrides defaults and the environment overrides the file', (t) => {
  const path = configFile(JSON.stringify({ server: { port: 9000, host: '127.0.0.1' } }));
  const config = loadConfig({
    file: { path, required: true },
    env: { EDGE_SERVER_PORT: '9100', EDGE_LOG_REQUESTS: 'true', UNRELATED: 'x' },
  });
  t.is(config.server.port, 9100);
  t.is(config.server.host, '127.0.0.1');
  t.true(config.log.requests);
  t.is(config.server.keepAliveTimeoutMs, 5000);
});

test('environment names follow the dotted keys', (t) => {
  t.is(envNameOf('server.keepAliveTimeoutMs'), 'EDGE_SERVER_KEEP_ALIVE_TIMEOUT_MS');
  t.is(envNameOf('firmware.slotPath'), 'EDGE_FIRMWARE_SLOT_PATH');
});

const refusals: Array<[string, () => unknown, RegExp]> = [
  [
    'a port out of range, from the environment',
    () => loadConfig({ env: { EDGE_SERVER_PORT: '70000' } }),
    /^server\.port from EDGE_SERVER_PORT: must be <= 65535$/,
  ],
  [
    'a number that is not one',
    () => loadConfig({ env: { EDGE_SERVER_REQUEST_TIMEOUT_MS: 'soon' } }),
    /^server\.requestTimeoutMs from EDGE_SERVER_REQUEST_TIMEOUT_MS: must be integer$/,
  ],
  [
    'a level that does not exist',
    () => loadConfig({ env: { EDGE_LOG_LEVEL: 'loud' } }),
    /^log\.level from EDGE_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent$/,
  ],
  [
    'an unknown key in the file',
    () => loadConfig({ file: { path: configFile('{"server":{"prot":1}}'), required: true } }),
    /^server\.prot in \/.*edge-server\.json: unknown setting$/,
  ],
  [
    'a wrong type in the file',
    () => loadConfig({ file: { path: configFile('{"server":{"host":5}}'), required: true } }),
    /^server\.host in \/.*: must be string$/,
  ],
  [
    'a file that is not JSON',
    () => loadConfig({ file: { path: configFile('{port: 1'), required: true } }),
    /^config file \/.* is not valid JSON: /,
  ],
  [
    'a file that is not an object',
    () => loadConfig({ file: { path: configFile('[1]'), required: true } }),
    /must hold a JSON object$/,
  ],
  [
    'a named file that is missing',
    () => loadConfig({ file: { path: '/nonexistent/edge.json', required: true } }),
    /^cannot read config file \/nonexistent\/edge\.json: ENOENT$/,
  ],
];

for (const [what, load, message] of refusals) {
  test(`refused: ${what}`, (t) => {
    const error = t.throws(load, { instanceOf: ConfigError });
    t.regex(error.message, message);
    t.false(error.message.includes('\n'), 'one line');
  });
}

test('the default file may be absent', (t) => {
  t.notThrows(() => loadConfig({ file: { path: '/nonexistent/edge.json', required: false } }));
});
