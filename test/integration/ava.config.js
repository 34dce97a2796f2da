// End-to-end tests under QEMU: one device at a time (each QEMU keeps a core busy).
export default {
  files: ['test/integration/**/*.test.ts'],
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
  concurrency: 1,
  serial: true,
  timeout: '6m',
  verbose: true,
};
