/**
 * dotenv files, read and edited without loss. The grammar is the common ground of python-dotenv, Docker Compose's
 * `env_file`, Node's `--env-file` and systemd's `EnvironmentFile`: `KEY=VALUE` lines, an optional `export ` prefix,
 * `#` comments and blank lines, values bare, in single quotes (literal) or double quotes (with \n \" \\ escapes).
 * We write values bare when they are plain (Dropbox tokens are [A-Za-z0-9._-]) and double-quoted otherwise, which
 * every one of those readers takes the same way.
 */
import { badFile, eolOf, lineBody, splitLines, withFinalEol } from './text.js';

const WHAT = 'dotenv file';
const KEY = /^[A-Za-z_][A-Za-z0-9_.]*$/;

interface DotenvLine {
  key: string;
  value: string;
  line: number;
}

function parseLines(text: string): { lines: string[]; entries: DotenvLine[] } {
  const lines = splitLines(text);
  const entries: DotenvLine[] = [];
  lines.forEach((raw, i) => {
    const line = lineBody(i === 0 ? raw.replace(/^\uFEFF/, '') : raw).trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw badFile(WHAT, `line ${i + 1}: expected KEY=VALUE or a # comment`);
    entries.push({ key: m[1]!, value: parseValue(m[2]!, i + 1), line: i });
  });
  return { lines, entries };
}

function parseValue(v: string, lineNo: number): string {
  if (v.startsWith("'")) {
    const end = v.indexOf("'", 1);
    if (end < 0) throw badFile(WHAT, `line ${lineNo}: a single-quoted value without its closing quote`);
    return v.slice(1, end);
  }
  if (v.startsWith('"')) {
    let out = '';
    for (let i = 1; i < v.length; i++) {
      const c = v[i]!;
      if (c === '"') return out;
      if (c === '\\' && i + 1 < v.length) {
        const n = v[++i]!;
        out += n === 'n' ? '\n' : n === 'r' ? '\r' : n === 't' ? '\t' : n;
      } else out += c;
    }
    throw badFile(WHAT, `line ${lineNo}: a double-quoted value without its closing quote`);
  }
  // An unquoted value ends at " #" (a trailing comment).
  return v.replace(/\s+#.*$/, '').trim();
}

/** Every variable in the file (the last one wins for a repeated name). */
export function parseDotenv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of parseLines(text).entries) out[e.key] = e.value;
  return out;
}

/** A value as a dotenv line writes it: bare when plain, else double-quoted with escapes. */
export function dotenvValue(v: string): string {
  return /^[A-Za-z0-9._~+/=:-]*$/.test(v) ? v : `"${v.replace(/(["\\$`])/g, '\\$1').replace(/\n/g, '\\n').replace(/\r/g, '\\r')}"`;
}

/**
 * Sets (string) or removes (null) variables and returns the file's new text. A variable already present is
 * rewritten on its line (an `export ` prefix kept; earlier repeats dropped, so the value we write is the one read);
 * new ones are appended in the order given. Comments, blank lines and other variables are kept byte-for-byte.
 */
export function setDotenv(text: string, values: Record<string, string | null>): string {
  for (const k of Object.keys(values)) if (!KEY.test(k)) throw badFile(WHAT, `"${k.slice(0, 40)}" cannot be a variable name`);
  const { lines, entries } = parseLines(text);
  const eol = eolOf(text);
  const remove = new Set<number>();
  const add: string[] = [];
  for (const [k, v] of Object.entries(values)) {
    const hits = entries.filter((e) => e.key === k);
    for (const h of v === null ? hits : hits.slice(0, -1)) remove.add(h.line);
    if (v === null) continue;
    const last = hits.at(-1);
    if (!last) {
      add.push(`${k}=${dotenvValue(v)}`);
      continue;
    }
    const old = lines[last.line]!;
    const prefix = /^(\s*(?:export\s+)?)/.exec(lineBody(old).replace(/^\uFEFF/, ''))![1]!;
    const bom = old.startsWith('\uFEFF') ? '\uFEFF' : '';
    lines[last.line] = `${bom}${prefix}${k}=${dotenvValue(v)}${old.slice(lineBody(old).length)}`;
  }
  const kept = lines.filter((_, i) => !remove.has(i)).join('');
  return add.length === 0 ? kept : withFinalEol(kept, eol) + add.map((l) => l + eol).join('');
}
