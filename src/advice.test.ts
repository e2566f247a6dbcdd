/**
 * Command lines are the CLI's rendering of a fix (src/cli/fix.ts): below src/cli/, advice is a hint in plain words
 * plus a structured Fix (src/errors.ts), so the web UI never tells a browser user to run `dropkey apikey revoke`
 * and a connect-link owner is never told to "run dropkey login again". This guard reads the text of every string
 * and template literal in src/ outside src/cli/ and src/emulator/ (comments and tests are not advice) and fails
 * on `dropkey <command>` for any command that fixes something. `dropkey serve`, `dropkey emulator`, `dropkey demo`
 * and `dropkey agent` name the programs themselves ("dropkey serve listening on ..."), not a fix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const ROOT = new URL('.', import.meta.url).pathname;
const SKIP_DIRS = new Set(['cli', 'emulator']);
const COMMAND = /\bdropkey (login|import|token|doctor|list|revoke|refresh|export|exec|app|apikey|keys)\b/;

/**
 * Advice that only the command line can carry out, and literals that are not advice, with the reason. An entry is a
 * file and a fragment of a literal in it, or (no file) a whole literal anywhere; an entry that no longer matches
 * anything fails the test, so the list cannot go stale.
 */
const ALLOWED: { file?: string; fragment: string; why: string }[] = [
  {
    file: 'config.ts',
    fragment: 'dropkey keys generate',
    why: 'a bad DROPKEY_MASTER_KEY is the operator\'s to fix, and only the command line generates a master key',
  },
  {
    file: 'server/ui/master-key.ts',
    fragment: 'dropkey keys generate',
    why: 'a running instance cannot hand a new master key to the others (docs/deploy.md): the operator generates it on the command line',
  },
  {
    file: 'server/ui/master-key.ts',
    fragment: 'use dropkey keys rotate',
    why: 'shown only when the server runs without key rotation: the command line is then the only way',
  },
];

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (!SKIP_DIRS.has(relative(ROOT, p))) walk(p, out);
    } else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) {
      out.push(p);
    }
  }
  return out;
}

/** The text of every string literal and template piece, with its line. */
function literals(file: string): { line: number; text: string }[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: { line: number; text: string }[] = [];
  const visit = (node: ts.Node): void => {
    if (
      ts.isStringLiteral(node) ||
      ts.isNoSubstitutionTemplateLiteral(node) ||
      ts.isTemplateHead(node) ||
      ts.isTemplateMiddle(node) ||
      ts.isTemplateTail(node)
    ) {
      found.push({ line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1, text: node.text });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

test('no `dropkey <command>` advice below src/cli/ (outside the emulator): lower layers give a Fix instead', () => {
  const files = walk(ROOT);
  assert.ok(files.length > 100, `read ${files.length} files`);
  assert.ok(!files.some((f) => relative(ROOT, f).startsWith('cli/') || relative(ROOT, f).startsWith('emulator/')));
  const used = new Set<number>();
  const offenders: string[] = [];
  for (const file of files) {
    const rel = relative(ROOT, file);
    for (const { line, text } of literals(file)) {
      if (!COMMAND.test(text)) continue;
      const allowed = ALLOWED.findIndex((a) => (a.file === undefined ? text === a.fragment : a.file === rel && text.includes(a.fragment)));
      if (allowed >= 0) used.add(allowed);
      else offenders.push(`src/${rel}:${line}: ${text.trim().slice(0, 120)}`);
    }
  }
  assert.deepEqual(offenders, [], 'give a hint in words and a Fix (src/errors.ts); the CLI renders the command');
  assert.deepEqual(
    ALLOWED.filter((_, i) => !used.has(i)).map((a) => `${a.file ?? '(any file)'}: ${a.fragment}`),
    [],
    'allowed entries that match nothing any more: remove them',
  );
});

test('the guard sees string and template literals, and not comments', () => {
  const probe = literals(new URL('./advice.test.ts', import.meta.url).pathname);
  assert.ok(probe.some((l) => l.text === 'dropkey keys generate'));
  // The phrase is split here so that only the file's header comment holds it whole.
  assert.ok(!probe.some((l) => l.text.includes('never tells a ' + 'browser user')), 'comments are not read');
});
