/**
 * Comments and docs cite public sources (Dropbox's documentation pages, RFCs) or files in this repository, never
 * notes kept outside it. `node scripts/citations.mjs --fix` rewrites what this finds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ROOT } from '../cli/cli-helpers.js';

test('no comment or doc cites the outside contract notes or the tracker', () => {
  const r = spawnSync(process.execPath, ['scripts/citations.mjs'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.stdout, '', `cite a public URL or a file in docs/ instead (node scripts/citations.mjs --fix):\n${r.stdout}`);
  assert.equal(r.status, 0, r.stderr);
});
