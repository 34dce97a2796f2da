import { HOST_TESTS } from './test/host.ava.config.js';

// Unit tests: every workspace's test/ but the host integration tests (npm run test:host).
export default {
  files: ['*/test/**/*.test.ts', ...HOST_TESTS.map((file) => `!${file}`)],
  extensions: { ts: 'module' },
  require: ['tsx'],
  workerThreads: false,
  timeout: '60s',
};
