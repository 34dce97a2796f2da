import { readFile } from 'node:fs/promises';

export interface ReleaseInfo {
  version: string;
}

/** What the running slot holds, as the image build recorded it. */
export async function readRelease(path: string): Promise<ReleaseInfo> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`cannot read the release file ${path}: ${(error as Error).message}`);
  }
  const version = (parsed as { version?: unknown }).version;
  if (typeof version !== 'string' || !version) throw new Error(`${path} names no version`);
  return { version };
}

/** The board, from the device tree's compatible strings: the QEMU virt board or a Pi 4. */
export async function detectBoard(
  compatiblePath = '/sys/firmware/devicetree/base/compatible',
): Promise<string> {
  const compatible = await readFile(compatiblePath, 'latin1').catch(() => '');
  const names = compatible.split('\0');
  if (names.includes('linux,dummy-virt')) return 'qemu';
  if (names.includes('raspberrypi,4-model-b') || names.includes('brcm,bcm2711')) return 'rpi4';
  throw new Error(
    `unknown board (device tree: ${names.filter(Boolean).join(', ') || 'none'}): set ota.board`,
  );
}

/**
 * The standby slot beside the running one: the same disk, the other slot's partition
 * (/dev/disk/by-partuuid/<disk>-02 <-> -03, /dev/vda2 <-> /dev/vda3, /dev/mmcblk0p2 <-> p3).
 */
export function standbyPathBeside(runningPath: string, standbyPartition: number): string {
  const partuuid = /^(.*\/by-partuuid\/[0-9a-f]{8}-)0[23]$/.exec(runningPath);
  if (partuuid) return `${partuuid[1]}0${standbyPartition}`;
  const device = /^(\/dev\/.*\D)[23]$/.exec(runningPath);
  if (device) return `${device[1]}${standbyPartition}`;
  throw new Error(`cannot tell the standby slot beside ${runningPath}: set ota.standbySlotPath`);
}
