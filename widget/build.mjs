// Bundle src/ into one minified script for a single <script> tag: admin/static/widget/dh-widget.js
import { build } from 'esbuild';

await build({
  entryPoints: ['src/index.js'],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome100', 'firefox100', 'safari15'],
  loader: { '.css': 'text' },
  legalComments: 'eof',
  outfile: '../admin/static/widget/dh-widget.js',
  logLevel: 'info',
});
