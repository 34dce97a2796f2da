// Compiles modules with asc's JS API: `node compile-modules.mjs <appDir> <outDir> <name>...`
// writes <outDir>/<name>/<name>.wasm from <appDir>/modules/<name>/asconfig.json.
// Plain JavaScript for plain node: through tsx's loader, importing binaryen (13 MB of
// JavaScript) takes about a minute instead of a few seconds.
import { join } from 'node:path';
import process from 'node:process';
import asc from 'assemblyscript/asc';

const [appDir, outDir, ...names] = process.argv.slice(2);
for (const name of names) {
  const { error, stderr } = await asc.main([
    '--config',
    `modules/${name}/asconfig.json`,
    // baseDir is app/, so file names inside the binary (abort messages) are relative: the
    // same bytes from any checkout.
    '--baseDir',
    appDir,
    '--outFile',
    join(outDir, name, `${name}.wasm`),
    '--noColors',
  ]);
  if (error) {
    process.stderr.write(`asc failed for module ${name}:\n${stderr.toString() || error.message}\n`);
    process.exit(1);
  }
}
