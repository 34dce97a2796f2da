import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FirmwareHash } from '../src/firmware-hash.js';
import { SLOT_HASHES_FILE, SlotHashRecords } from '../src/slot-hash-records.js';

function scratch(t: { teardown: (fn: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'edge-slot-hashes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const slot = join(dir, 'slot-b.img');
  writeFileSync(slot, Buffer.alloc(256 * 1024, 7));
  return { dir, slot, records: new SlotHashRecords(dir) };
}

test('a recorded slot is known again; forgetting it or changing its first bytes drops it', async (t) => {
  const { dir, slot, records } = scratch(t);
  const hash = { sha256: 'cd'.repeat(32), length: 256 * 1024 };
  t.is(await records.lookup(slot), undefined);
  await records.remember(slot, hash);
  t.deepEqual(await new SlotHashRecords(dir).lookup(slot), hash);

  // Written from outside the agent (its superblock changes): measured again.
  writeFileSync(slot, Buffer.alloc(256 * 1024, 8));
  t.is(await records.lookup(slot), undefined);

  await records.remember(slot, hash);
  await records.forget(slot);
  t.is(await records.lookup(slot), undefined);
});

test('a garbled or torn record file means measuring again, never a wrong hash', async (t) => {
  const { dir, slot, records } = scratch(t);
  for (const text of ['', '{"', 'null', '[]']) {
    writeFileSync(join(dir, SLOT_HASHES_FILE), text);
    t.is(await records.lookup(slot), undefined, JSON.stringify(text));
  }
  await records.remember(slot, { sha256: 'ef'.repeat(32), length: 1 });
  t.truthy(await records.lookup(slot), 'a garbled file is replaced');
});

test('the firmware hash is measured once, then taken from the record at the next boot', async (t) => {
  const { dir, slot } = scratch(t);
  const first = await new FirmwareHash(slot, { records: new SlotHashRecords(dir) }).done;
  t.like(first, { state: 'known', length: 256 * 1024 });
  t.false('recorded' in first);
  const next = await new FirmwareHash(slot, { records: new SlotHashRecords(dir) }).done;
  t.deepEqual(next, { ...first, recorded: true });
});
