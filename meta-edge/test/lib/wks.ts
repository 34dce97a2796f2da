/**
 * A small reader of wic kickstart files (.wks, .wks.in): `part` and `bootloader` lines with
 * their options, as scripts/lib/wic/ksparser.py reads them (shell-like quoting, # comments).
 */

export interface KickstartPartition {
  line: number;
  mountpoint?: string;
  options: Record<string, string | true>;
}

export interface Kickstart {
  partitions: KickstartPartition[];
  bootloader: Record<string, string | true>;
}

function words(line: string): string[] {
  const result: string[] = [];
  const pattern = /\s*((?:[^\s"']+|"[^"]*"|'[^']*')+)/gy;
  let match: RegExpExecArray | null;
  let end = 0;
  while ((match = pattern.exec(line))) {
    result.push(match[1]!.replace(/["']/g, ''));
    end = pattern.lastIndex;
  }
  if (line.slice(end).trim() !== '') throw new Error(`wks: unbalanced quotes: ${line}`);
  return result;
}

function options(args: string[]): { positional: string[]; options: Record<string, string | true> } {
  const positional: string[] = [];
  const parsed: Record<string, string | true> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    if (eq > 0) parsed[arg.slice(2, eq)] = arg.slice(eq + 1);
    else if (args[i + 1] !== undefined && !args[i + 1]!.startsWith('--')) {
      parsed[arg.slice(2)] = args[++i]!;
    } else parsed[arg.slice(2)] = true;
  }
  return { positional, options: parsed };
}

/** Options that take no value in wic's ksparser (store_true). */
const FLAGS = new Set([
  'active',
  'use-label',
  'no-table',
  'use-uuid',
  'no-fstab-update',
  'hidden',
  'mbr',
]);

export function parseKickstart(text: string): Kickstart {
  const kickstart: Kickstart = { partitions: [], bootloader: {} };
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const [command, ...rest] = words(line);
    // A flag followed by a positional word would swallow it: mark flags first.
    const args = rest.map((arg) => (FLAGS.has(arg.slice(2)) ? `${arg}=` : arg));
    const parsed = options(args);
    for (const [key, value] of Object.entries(parsed.options)) {
      if (value === '' && FLAGS.has(key)) parsed.options[key] = true;
    }
    if (command === 'part' || command === 'partition') {
      if (parsed.positional.length > 1) throw new Error(`wks line ${index + 1}: two mountpoints`);
      kickstart.partitions.push({
        line: index + 1,
        ...(parsed.positional[0] ? { mountpoint: parsed.positional[0] } : {}),
        options: parsed.options,
      });
    } else if (command === 'bootloader') {
      kickstart.bootloader = parsed.options;
    } else if (command !== 'include') {
      throw new Error(`wks line ${index + 1}: unknown command ${command}`);
    }
  });
  return kickstart;
}

/** wic's sizes (--size, --fixed-size): a number in MiB, or with a k/K, M or G suffix. */
export function wicBytes(size: string): number {
  const match = /^(\d+)([kKMG]?)$/.exec(size.trim());
  if (!match) throw new Error(`wks: not a size: ${size}`);
  const unit = { '': 1024 ** 2, k: 1024, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2]!]!;
  return Number(match[1]) * unit;
}
