// Builds dropkey:
// 1. tsc compiles src/ to dist/ (the library entries, declarations). Type errors fail the build: a red build must
//    never be published or tested.
// 2. esbuild bundles the CLI (dist/cli/main.js) with code splitting: each command stays a lazily loaded chunk, but
//    the modules a command needs load as one file instead of dozens. `dropkey token` start-up is a measured target
//    (bench/token-startup.mjs) and ES module loading is a large part of it. Packages stay external.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
rmSync('dist', { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

const esbuild = await import('esbuild');
await esbuild.build({
  entryPoints: { main: 'src/cli/main.ts' },
  outdir: 'dist/cli',
  // Chunks sit beside main.js so that paths relative to import.meta.url (../../package.json) stay the same.
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
  allowOverwrite: true,
  logLevel: 'warning',
});

// 3. The binary (dist/cli/dropkey.cjs) and the `dropkey token` hot path (dist/cli/token.cjs) as CommonJS: loading
//    them needs no ES module loader. import.meta.url (used with createRequire) is given its CommonJS equivalent.
const cjs = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
  logLevel: 'warning',
  define: { 'import.meta.url': '__dropkey_import_meta_url' },
  banner: { js: "const __dropkey_import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
};
await esbuild.build({ ...cjs, entryPoints: ['src/cli/token-main.ts'], outfile: 'dist/cli/token.cjs' });
await esbuild.build({ ...cjs, entryPoints: ['src/cli/bin.ts'], outfile: 'dist/cli/dropkey.cjs', external: ['./token.cjs', './main.js'], banner: { js: '#!/usr/bin/env node' }, define: {} });
for (const f of ['dist/cli/main.js', 'dist/cli/dropkey.cjs']) if (existsSync(f)) chmodSync(f, 0o755);
