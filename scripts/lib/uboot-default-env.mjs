// Prints the default environment compiled into a U-Boot binary as `key=value` lines, for
// mkenvimage. An environment file that U-Boot loads replaces its defaults as a whole, so a
// shipped uboot.env that changes one setting must carry all the others unchanged.
// Usage: node uboot-default-env.mjs u-boot.bin
import { readFileSync } from 'node:fs';
import { argv, exit, stderr, stdout } from 'node:process';

const binary = readFileSync(argv[2]);
// The default environment is one block of `key=value\0` strings ending in `\0\0`, with
// bootcmd first and bootdelay second (U-Boot's include/env_default.h).
const bootdelay = binary.indexOf('\0bootdelay=');
const start = binary.lastIndexOf('\0bootcmd=', bootdelay) + 1;
const end = binary.indexOf('\0\0', bootdelay);
if (bootdelay < 0 || start <= 0 || end < 0) {
  stderr.write(`${argv[2]}: no default environment found` + '\n');
  exit(1);
}
const entries = binary.subarray(start, end).toString('latin1').split('\0');
for (const entry of entries) {
  if (!/^[A-Za-z0-9_.#-]+=[\x20-\x7e\t]*$/.test(entry)) {
    stderr.write(
      `${argv[2]}: unexpected default environment entry ${JSON.stringify(entry)}` + '\n',
    );
    exit(1);
  }
}
for (const name of ['bootcmd', 'bootdelay', 'kernel_addr_r', 'fdt_addr_r', 'ramdisk_addr_r']) {
  if (!entries.some((entry) => entry.startsWith(`${name}=`))) {
    stderr.write(`${argv[2]}: the default environment has no ${name}` + '\n');
    exit(1);
  }
}
stdout.write(`${entries.join('\n')}\n`);
