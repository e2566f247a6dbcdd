/**
 * What `npm publish` would ship (npm pack --dry-run on the built tree): the library, the CLI and the docs, and no
 * test, test-support, store contract suite or test helper.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ROOT } from '../cli/cli-helpers.js';

test('npm pack lists no test, contract suite or test-helper file', () => {
  // --ignore-scripts: "prepare" would rebuild; the tests run on the tree `npm run build` made.
  const r = spawnSync('npm', ['pack', '--dry-run', '--ignore-scripts', '--json'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const files = (JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
  const testish = files.filter((p) => /\.test\.|\.e2e\.|test-support|test-helpers|fixtures\/|^test\/|(^|\/)store\/(contract|virtual-time)/.test(p));
  assert.deepEqual(testish, []);
  for (const needed of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/emulator/index.js', 'dist/cli/dropkey.cjs', 'dist/cli/token.cjs', 'dist/cli/main.js', 'dist/config.js']) {
    assert.ok(files.includes(needed), `${needed} is packed`);
  }
});
