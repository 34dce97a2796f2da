import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  builtImages,
  freshDisk,
  writeDataFiles,
  type BuiltImages,
} from '../../test/integration/images.js';
import { QemuDevice } from '../../test/integration/qemu-device.js';
import { handshake, type HandshakeTarget } from './tls-handshakes.js';

/** OpenSSL's capability mask for NEON alone: the Pi 4's BCM2711 has no ARMv8 crypto extensions. */
const PI4_OPENSSL_ARMCAP = '1';
const BOOT_TIMEOUT_MS = 10 * 60_000;

/**
 * The device image (scripts/build-image.sh) on QEMU's virt board, its edge server serving TLS
 * with the given certificate; the guest's clock counts instructions, so the server CPU the
 * target reads is a Cortex-A72 instruction count (1 ns per instruction).
 */
export async function bootTlsDevice(
  scratch: string,
  certificate: { certFile: string; keyFile: string },
): Promise<{ target: HandshakeTarget; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(scratch, 'device-'));
  const disk = freshDisk(deviceImages(), dir);
  writeDataFiles(disk, dir, {
    '/edge/edge-server.env': [
      'EDGE_TLS_ENABLED=true',
      'EDGE_LOG_LEVEL=warn',
      `OPENSSL_armcap=${PI4_OPENSSL_ARMCAP}`,
      '',
    ].join('\n'),
    '/edge/tls/cert.pem': readFileSync(certificate.certFile, 'utf8'),
    '/edge/tls/key.pem': readFileSync(certificate.keyFile, 'utf8'),
  });
  const device = await QemuDevice.start({ disk, instructionClock: true });
  try {
    await device.openShell(BOOT_TIMEOUT_MS);
    await waitForTls(device.hostPort, BOOT_TIMEOUT_MS);
    const pid = (await device.run('pidof node')).trim();
    if (!/^\d+$/.test(pid))
      throw new Error(`expected one node process on the device, got '${pid}'`);
    const readServerCpuMs = async () => {
      const lines = await device.run(`cat /proc/${pid}/task/*/schedstat`);
      return lines
        .split('\n')
        .filter((line) => line.trim())
        .reduce((sum, line) => sum + Number(line.split(' ')[0]) / 1e6, 0);
    };
    // The guest runs many times slower than the host: give its server time to finish a close.
    return {
      target: { port: device.hostPort, readServerCpuMs, settleMs: 500 },
      stop: () => device.stop(),
    };
  } catch (error) {
    await device.stop();
    throw error;
  }
}

function deviceImages(): BuiltImages {
  try {
    return builtImages();
  } catch (error) {
    throw new Error(
      `no device image to measure (${(error as Error).message}): run scripts/build-image.sh ` +
        'first, or leave this part out (BENCH_RUNTIME_PARTS=scheduler,tls,squeeze)',
    );
  }
}

async function waitForTls(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      (await handshake(port, undefined)).socket.destroy();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`no TLS server on the device: ${String(error)}`);
      await sleep(1000);
    }
  }
}
