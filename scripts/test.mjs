// Runs every *.test.ts under src/ and test/ with node's built-in test runner (through tsx).
//   node scripts/test.mjs            all tests (end-to-end ones need `npm run build` first)
//   node scripts/test.mjs --unit     only unit tests (files not named *.e2e.test.ts)
//   node scripts/test.mjs PATTERN... only files whose path contains one of the patterns
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const patterns = args.filter((a) => !a.startsWith('--'));

function walk(dir, out = []) {
  let entries;
  try { entries = readdirSync(dir); } catch { return out; }
  for (const name of entries) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

let files = [...walk('src'), ...walk('test')].sort();
if (unitOnly) files = files.filter((f) => !f.endsWith('.e2e.test.ts'));
if (patterns.length) files = files.filter((f) => patterns.some((p) => f.includes(p)));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=600000', ...files],
  { stdio: 'inherit', env: { ...process.env, DROPKEY_TEST: '1' } },
);
process.exit(r.status ?? 1);
