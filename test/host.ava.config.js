// Host integration tests: the real components on this host (the update server and its CLI as
// processes, PostgreSQL, the agent killed with SIGKILL, the one-file bundle, module threads
// starved of CPU with taskset and chrt), not QEMU.
// `npm run test:unit` leaves them out to stay fast; `npm test` runs both.
export const HOST_TESTS = [
  'app/test/bundle.test.ts',
  'app/test/ota/agent-kill.test.ts',
  'app/test/ota/agent-with-server.test.ts',
  'app/test/ota/app-updates.test.ts',
  'app/test/ota/standby-full.test.ts',
  'app/test/sandbox/cpu-quota.test.ts',
  'app/test/sandbox/uplink-with-server.test.ts',
  'ota-server/test/cli.test.ts',
  'ota-server/test/dashboard-browser.test.ts',
  'ota-server/test/fleet-store.test.ts',
];

export default {
  files: HOST_TESTS,
  extensions: { ts: 'module' },
  require: ['tsx'],
  workerThreads: false,
  timeout: '120s',
};
