import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

/** Where the update server finds the dashboard (served under /dashboard/). */
export const DASHBOARD_DIST = fileURLToPath(new URL('../dist/dashboard', import.meta.url));
const SOURCE = fileURLToPath(new URL('src', import.meta.url));

export interface BuiltFile {
  path: string;
  bytes: number;
  gzipBytes: number;
}

/** The page: no inline script or style (the dashboard's CSP allows neither). */
function indexHtml(version: string): string {
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Fleet dashboard</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="/dashboard/assets/app.css?v=${version}" />
    <script type="module" src="/dashboard/assets/app.js?v=${version}"></script>
  </head>
  <body>
    <div id="app"></div>
    <noscript>The fleet dashboard needs JavaScript.</noscript>
  </body>
</html>
`;
}

/**
 * Bundles the single-page app with esbuild into `<outDir>/{index.html, assets/app.js,
 * assets/app.css}` (minified, with source maps); the page names the assets with a content hash
 * in the query, so a new build is never hidden by a cached one.
 */
export async function buildDashboard(outDir = DASHBOARD_DIST): Promise<BuiltFile[]> {
  const assets = join(outDir, 'assets');
  await rm(outDir, { recursive: true, force: true });
  await mkdir(assets, { recursive: true });
  await build({
    entryPoints: [join(SOURCE, 'main.tsx'), join(SOURCE, 'app.css')],
    entryNames: 'app',
    outdir: assets,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome109', 'firefox115', 'safari15.6'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    minify: true,
    sourcemap: 'linked',
    logLevel: 'warning',
  });
  const js = await readFile(join(assets, 'app.js'));
  const css = await readFile(join(assets, 'app.css'));
  const version = createHash('sha256').update(js).update(css).digest('hex').slice(0, 12);
  const html = indexHtml(version);
  await writeFile(join(outDir, 'index.html'), html);
  const sized = (path: string, bytes: Uint8Array | string): BuiltFile => ({
    path,
    bytes: Buffer.byteLength(bytes),
    gzipBytes: gzipSync(bytes).byteLength,
  });
  return [
    sized(join(outDir, 'index.html'), html),
    sized(join(assets, 'app.js'), js),
    sized(join(assets, 'app.css'), css),
  ];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const file of await buildDashboard()) {
    console.log(
      `${relative(process.cwd(), file.path)}: ${(file.bytes / 1024).toFixed(1)} KiB (${file.bytes} bytes, ${(file.gzipBytes / 1024).toFixed(1)} KiB gzip)`,
    );
  }
}
