import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, chmodSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { removeStaleTemps, writeAtomic } from './writer.js';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-writer-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const modeOf = (p: string): number => statSync(p).mode & 0o7777;

test('a new file gets 0600 whatever the umask; an existing file keeps its mode; a configured mode wins', async (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'token');
  const old = process.umask(0o000);
  try {
    const r = await writeAtomic(p, () => 'one\n', { mode: null, force: false });
    assert.deepEqual(r, { written: true, path: p, mode: 0o600 });
  } finally {
    process.umask(old);
  }
  assert.equal(modeOf(p), 0o600);
  chmodSync(p, 0o640);
  await writeAtomic(p, () => 'two\n', { mode: null, force: false });
  assert.equal(readFileSync(p, 'utf8'), 'two\n');
  assert.equal(modeOf(p), 0o640);
  await writeAtomic(p, () => 'three\n', { mode: 0o604, force: false });
  assert.equal(modeOf(p), 0o604);
  assert.deepEqual(readdirSync(dir), ['token'], 'no temporary file is left behind');
});

test('the same text is not written again unless forced; the renderer sees the current text', async (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'f');
  writeFileSync(p, 'same\n', { mode: 0o600 });
  const before = statSync(p).ino;
  const seen: Array<string | null> = [];
  const r = await writeAtomic(p, (prev) => (seen.push(prev), 'same\n'), { mode: null, force: false });
  assert.equal(r.written, false);
  assert.equal(statSync(p).ino, before);
  const forced = await writeAtomic(p, () => 'same\n', { mode: null, force: true });
  assert.equal(forced.written, true);
  assert.notEqual(statSync(p).ino, before, 'a forced write replaces the file (rename)');
  assert.deepEqual(seen, ['same\n']);
});

test('a renderer that throws leaves the file untouched and no temporary file', async (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'f');
  writeFileSync(p, 'precious\n');
  await assert.rejects(
    writeAtomic(p, () => {
      throw new Error('damaged');
    }, { mode: null, force: true }),
    /damaged/,
  );
  assert.equal(readFileSync(p, 'utf8'), 'precious\n');
  assert.deepEqual(readdirSync(dir), ['f']);
});

test('an edit made between the read and the rename is kept: the render starts again from it', async (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'conf');
  writeFileSync(p, 'a=1\n');
  let renders = 0;
  await writeAtomic(
    p,
    (prev) => {
      renders++;
      // Someone else edits the file while our first render is being written.
      if (renders === 1) writeFileSync(p, 'a=1\nmine=yes\n');
      return `${prev ?? ''}token=new\n`;
    },
    { mode: null, force: false },
  );
  assert.equal(renders, 2);
  assert.equal(readFileSync(p, 'utf8'), 'a=1\nmine=yes\ntoken=new\n');
});

test('a symlinked output is written through to its target; the link stays', async (t) => {
  const dir = tempDir(t);
  const target = join(dir, 'real.conf');
  const link = join(dir, 'rclone.conf');
  writeFileSync(target, 'old\n', { mode: 0o640 });
  symlinkSync(target, link);
  const r = await writeAtomic(link, () => 'new\n', { mode: null, force: false });
  assert.equal(r.path, target);
  assert.ok(lstatSync(link).isSymbolicLink());
  assert.equal(readFileSync(target, 'utf8'), 'new\n');
  assert.equal(modeOf(target), 0o640);
});

test('stale temporary files of dead writers are removed; a live writer\'s and other files are not', async (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'token');
  writeFileSync(p, 'x\n');
  // A pid that surely exited: a child we ran to completion.
  const child = spawn(process.execPath, ['-e', '']);
  await once(child, 'exit');
  const dead = child.pid!;
  writeFileSync(join(dir, `.token.dropkey-${dead}-abcdef.tmp`), 'partial');
  writeFileSync(join(dir, `.token.dropkey-${process.pid}-123456.tmp`), 'in progress');
  writeFileSync(join(dir, 'unrelated.tmp'), 'keep');
  assert.equal(await removeStaleTemps(p), 1);
  assert.deepEqual(readdirSync(dir).sort(), [`.token.dropkey-${process.pid}-123456.tmp`, 'token', 'unrelated.tmp'].sort());
});
