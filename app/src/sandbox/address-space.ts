import { readFileSync } from 'node:fs';

/** What V8 reserves per wasm memory on 64-bit hosts: 8 GiB of guarded space and its margins. */
export const WASM_MEMORY_RESERVATION_BYTES = 10 * 1024 ** 3;
/** Kept free beyond the next memory, for the JS heaps, thread stacks and mappings of the process. */
const HEADROOM_BYTES = 2 * 1024 ** 3;

export interface AddressSpace {
  /** The usable size: RLIMIT_AS when set, else the user half of the virtual address size. */
  limitBytes: number;
  /** Where the limit comes from, for the refusal message. */
  limitSource: string;
  /** Virtual memory the process holds now (VmSize). */
  usedBytes: number;
}

/** The process's address space from /proc (Linux); undefined elsewhere (no check then). */
export function readAddressSpace(proc = '/proc/self'): AddressSpace | undefined {
  let limits: string, status: string, maps: string;
  try {
    limits = readFileSync(`${proc}/limits`, 'utf8');
    status = readFileSync(`${proc}/status`, 'utf8');
    maps = readFileSync(`${proc}/maps`, 'utf8');
  } catch {
    return undefined;
  }
  const usedKib = /^VmSize:\s+(\d+) kB/m.exec(status)?.[1];
  if (usedKib === undefined) return undefined;
  const usedBytes = Number(usedKib) * 1024;
  const vaBits = userAddressBits(maps);
  const vaBytes = 2 ** vaBits;
  const soft = /^Max address space\s+(\S+)/m.exec(limits)?.[1];
  if (soft && soft !== 'unlimited' && Number(soft) < vaBytes) {
    return {
      limitBytes: Number(soft),
      limitSource: `RLIMIT_AS (ulimit -v) ${soft} bytes`,
      usedBytes,
    };
  }
  return { limitBytes: vaBytes, limitSource: `${vaBits}-bit user address space`, usedBytes };
}

/**
 * The bits of user virtual addresses, from the highest mapping (the stack sits near the top):
 * 47 on x86-64, 48 on aarch64 with 48-bit VA, 39 on kernels built for 39-bit VA.
 */
export function userAddressBits(maps: string): number {
  let highest = 0n;
  for (const line of maps.split('\n')) {
    const end = /^[0-9a-f]+-([0-9a-f]+) /.exec(line)?.[1];
    // Kernel-space entries ([vsyscall] at 0xffffffffff600000 on x86-64) are not user addresses.
    if (!end || line.includes('[vsyscall]')) continue;
    const address = BigInt(`0x${end}`);
    if (address > highest) highest = address;
  }
  return Math.max(32, (highest - 1n).toString(2).length);
}

/** Why one more wasm memory does not fit, or undefined when it does. */
export function refuseWasmMemory(space: AddressSpace | undefined): string | undefined {
  if (!space) return undefined;
  const free = space.limitBytes - space.usedBytes;
  if (free >= WASM_MEMORY_RESERVATION_BYTES + HEADROOM_BYTES) return undefined;
  const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  return (
    `not enough address space for one more wasm memory: V8 reserves about ` +
    `${gib(WASM_MEMORY_RESERVATION_BYTES)} per memory, and ${gib(Math.max(0, free))} of the ` +
    `${space.limitSource} (${gib(space.limitBytes)}) is free (${gib(HEADROOM_BYTES)} kept for the process)`
  );
}
