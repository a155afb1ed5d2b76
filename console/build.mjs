// Build the console into admin/static/console/ (served by the admin backend at /console/):
// console.js (esbuild bundle of src/main.ts, Chart.js included), console.css, index.html, and
// build.json with the SHA-256 of the sources it was built from. tests/console/test_console_bundle.py
// recomputes that hash (so a committed bundle always matches its sources) and, where node_modules
// exists, rebuilds and compares the bytes.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const out = process.argv[2] || join(here, '..', 'admin', 'static', 'console');

function files(dir) {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : [join(dir, n)]));
}
// sources: everything under src/, the build script, the lock file and the TypeScript settings
export function sourceHash() {
  const list = [...files(join(here, 'src')), join(here, 'build.mjs'), join(here, 'package-lock.json'), join(here, 'tsconfig.json')]
    .map((p) => relative(here, p).split('\\').join('/')).sort();
  const h = createHash('sha256');
  for (const rel of list) h.update(`${rel}\n`).update(readFileSync(join(here, rel))).update('\n');
  return h.digest('hex');
}

mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'main.ts')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome100', 'firefox100', 'safari15'],
  legalComments: 'eof',
  outfile: join(out, 'console.js'),
  logLevel: 'info',
});
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'));
copyFileSync(join(here, 'src', 'console.css'), join(out, 'console.css'));
writeFileSync(join(out, 'build.json'), `${JSON.stringify({ sources_sha256: sourceHash() }, null, 2)}\n`);
