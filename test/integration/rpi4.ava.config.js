// The Pi 4 SD card on QEMU's raspi4b (npm run test:rpi4): one device at a time.
import base from './ava.config.js';

export default {
  ...base,
  files: ['test/integration/rpi4*.test.ts'],
  // An update on the emulated card takes minutes per pass over a slot (about 1 MB/s).
  timeout: '25m',
};
