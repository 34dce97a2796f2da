import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '@edge/formats';

/** What a slot held when it was last measured: its image's length and SHA-256. */
export interface SlotHash {
  sha256: string;
  length: number;
}

interface SlotRecord extends SlotHash {
  /** SHA-256 of the slot's first FINGERPRINT_BYTES: a write from outside the agent shows. */
  head: string;
}

/** The file the records live in, under the agent's data folder (what the image build seeds). */
export const SLOT_HASHES_FILE = 'slot-hashes.json';
/** The ext4 superblock and group descriptors: what any change of a file system rewrites. */
const FINGERPRINT_BYTES = 64 * 1024;

/**
 * The SHA-256 of each slot as last measured, kept on /data so that a boot does not read its
 * whole slot again (on an SD card that is seconds on a Pi, minutes under emulation). The update
 * agent is the only writer of a slot: it forgets the slot's record before writing it and
 * records it once the written slot has verified. A record whose slot no longer starts with the
 * bytes it did is ignored, so a slot written from outside (a technician's dd) is measured again.
 */
export class SlotHashRecords {
  readonly file: string;

  constructor(dataDir: string) {
    this.file = join(dataDir, SLOT_HASHES_FILE);
  }

  /** The recorded hash of the slot at `slotPath`, if it still starts as it did. */
  async lookup(slotPath: string): Promise<SlotHash | undefined> {
    const record = (await this.#read())[slotPath];
    if (!record) return undefined;
    const head = await fingerprint(slotPath).catch(() => undefined);
    return head === record.head ? { sha256: record.sha256, length: record.length } : undefined;
  }

  async remember(slotPath: string, hash: SlotHash): Promise<void> {
    const records = await this.#read();
    records[slotPath] = {
      sha256: hash.sha256,
      length: hash.length,
      head: await fingerprint(slotPath),
    };
    await writeFileAtomic(this.file, `${JSON.stringify(records, null, 2)}\n`);
  }

  /** Before the slot is written: a record must never outlive the bytes it describes. */
  async forget(slotPath: string): Promise<void> {
    const records = await this.#read();
    if (!(slotPath in records)) return;
    delete records[slotPath];
    await writeFileAtomic(this.file, `${JSON.stringify(records, null, 2)}\n`);
  }

  async #read(): Promise<Record<string, SlotRecord>> {
    const text = await readFile(this.file, 'utf8').catch(() => '{}');
    try {
      const parsed = JSON.parse(text) as unknown;
      const isRecords = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed);
      return isRecords ? (parsed as Record<string, SlotRecord>) : {};
    } catch {
      // Torn or garbled: the slots are measured again, which is always right.
      return {};
    }
  }
}

/** SHA-256 of a slot's first bytes (hex). */
export async function fingerprint(slotPath: string): Promise<string> {
  const handle = await open(slotPath, 'r');
  try {
    const buffer = Buffer.alloc(FINGERPRINT_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, FINGERPRINT_BYTES, 0);
    return createHash('sha256').update(buffer.subarray(0, bytesRead)).digest('hex');
  } finally {
    await handle.close();
  }
}
