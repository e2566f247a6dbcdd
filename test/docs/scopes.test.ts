/**
 * The scopes the docs tell users to register: an app that reads or writes files also needs files.metadata.read,
 * or list_folder (and rclone, which lists before it copies) fails with missing_scope. Checked in every
 * `dropkey app add` command of README.md and docs/, and in the emulator's app and seed examples.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

function markdown(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) markdown(p, out);
    else if (name.endsWith('.md')) out.push(p);
  }
  return out;
}
const files = [join(ROOT, 'README.md'), ...markdown(join(ROOT, 'docs'))];

/** `dropkey app add ...` commands, continuation lines joined. */
function appAddCommands(text: string): string[] {
  return [...text.replace(/\\\n/g, ' ').matchAll(/^.*\bdropkey app add\b.*$/gm)].map((m) => m[0]);
}

test('README quick start: the app add command asks for files.metadata.read with the file scopes', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const quick = appAddCommands(readme).filter((c) => c.includes('--scope'));
  assert.ok(quick.length >= 1, 'the README registers an app with scopes');
  for (const c of quick) assert.match(c, /--scope files\.metadata\.read\b/, c);
});

test('every documented app add that asks for file content also asks for files.metadata.read', () => {
  let checked = 0;
  for (const f of files) {
    for (const c of appAddCommands(readFileSync(f, 'utf8'))) {
      if (!/--scope files\.content\./.test(c)) continue;
      checked++;
      assert.match(c, /--scope files\.metadata\.read\b/, `${relative(ROOT, f)}: ${c}`);
    }
  }
  assert.ok(checked >= 2, `found ${checked} commands`);
});

test('emulator app and seed examples with file content scopes include files.metadata.read', () => {
  const text = readFileSync(join(ROOT, 'docs', 'emulator.md'), 'utf8');
  const lists = [...text.matchAll(/"scopes": (\[[^\]]*\])/g)].map((m) => JSON.parse(m[1]!) as string[]);
  const withContent = lists.filter((l) => l.some((s) => s.startsWith('files.content.')));
  assert.ok(withContent.length >= 2);
  for (const l of withContent) assert.ok(l.includes('files.metadata.read'), JSON.stringify(l));
});
