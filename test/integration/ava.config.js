// End-to-end tests under QEMU: two scenario files at a time (a QEMU device keeps one core busy).
export default {
  files: ['test/integration/**/*.test.ts', '!test/integration/rpi4*.test.ts'], // rpi4: npm run test:rpi4
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
  concurrency: 2,
  serial: true,
  timeout: '6m',
  verbose: true,
};
