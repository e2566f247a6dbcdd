/**
 * rclone.conf, read and edited without loss: every line we do not change comes back byte-for-byte.
 *
 * The grammar is the one rclone reads (its config file goes through unknwon/goconfig): lines are trimmed; empty
 * lines and lines starting with `#` or `;` are comments; `[name]` opens a remote's section; other lines are
 * `key = value`, split at the first `=` or `:`; a value wrapped in double quotes loses them. rclone writes
 * `key = value`, so do we. An encrypted configuration (`rclone config` "s) Set configuration password") cannot be
 * edited from outside rclone, so it is refused with that said.
 */
import { badFile, eolOf, lineBody, rfc3339, splitLines, withFinalEol } from './text.js';

const WHAT = 'rclone.conf';

interface Entry {
  key: string;
  value: string;
  /** Index of the entry's line in `lines`. */
  line: number;
}

interface Section {
  name: string;
  /** Index of the `[name]` line. */
  header: number;
  entries: Entry[];
  /** Index of the section's last line holding an entry (the header when it has none). */
  lastEntryLine: number;
}

export interface RcloneConf {
  readonly lines: readonly string[];
  readonly sections: readonly Section[];
}

export function parseRcloneConf(text: string): RcloneConf {
  // A byte-order mark stays part of the first line, so it is written back as it was.
  const lines = splitLines(text);
  const sections: Section[] = [];
  let current: Section | null = null;
  lines.forEach((raw, i) => {
    const line = lineBody(i === 0 ? raw.replace(/^\uFEFF/, '') : raw).trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    if (line.startsWith('RCLONE_ENCRYPT_V0:')) {
      throw badFile(WHAT, 'the configuration is encrypted, so dropkey cannot read or edit it', 'Point dropkey at a separate, unencrypted rclone config file (rclone --config FILE), or remove the password with rclone config.');
    }
    if (line.startsWith('[') && line.endsWith(']')) {
      const name = line.slice(1, -1).trim();
      if (name === '') throw badFile(WHAT, `line ${i + 1}: a section header with no remote name`);
      current = { name, header: i, entries: [], lastEntryLine: i };
      sections.push(current);
      return;
    }
    const at = line.search(/[=:]/);
    if (at <= 0) throw badFile(WHAT, `line ${i + 1}: expected "key = value", "[remote]" or a # comment`);
    if (current === null) {
      // goconfig files a key before any section under DEFAULT; rclone has no use for it, and we leave it alone.
      return;
    }
    const sec: Section = current;
    sec.entries.push({ key: line.slice(0, at).trim(), value: unquote(line.slice(at + 1).trim()), line: i });
    sec.lastEntryLine = i;
  });
  return { lines, sections };
}

function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

export function rcloneRemoteNames(conf: RcloneConf): string[] {
  return conf.sections.map((s) => s.name);
}

/** A remote's keys and values (a repeated section adds to the first; the last value of a key wins), or null. */
export function rcloneRemote(conf: RcloneConf, name: string): Record<string, string> | null {
  const secs = conf.sections.filter((s) => s.name === name);
  if (secs.length === 0) return null;
  const out: Record<string, string> = {};
  for (const e of secs.flatMap((s) => s.entries)) out[e.key] = e.value;
  return out;
}

function findSection(conf: RcloneConf, name: string): Section | undefined {
  // A repeated section adds to the first one; the edit goes to the last, whose values win.
  return conf.sections.filter((s) => s.name === name).at(-1);
}

/**
 * Sets (string) or removes (null) keys of one remote and returns the file's new text. Existing keys are rewritten
 * on their own line; new keys go after the remote's last key; a missing remote is appended as a new section with
 * `create` first (e.g. `{type: 'dropbox'}`). Everything else is kept as it was.
 */
export function setRcloneRemote(
  text: string,
  name: string,
  values: Record<string, string | null>,
  create: Record<string, string>,
): string {
  if (!/^[^\[\]\r\n]+$/.test(name) || name.trim() !== name) {
    throw badFile(WHAT, `"${name.slice(0, 80)}" cannot be a remote name (no brackets, line breaks or surrounding spaces)`);
  }
  for (const [k, v] of Object.entries({ ...create, ...values })) {
    if (!/^[A-Za-z0-9_-]+$/.test(k)) throw badFile(WHAT, `"${k.slice(0, 40)}" cannot be a key`);
    if (v !== null && /[\r\n]/.test(v)) throw badFile(WHAT, `the value of ${k} holds a line break`);
  }
  const conf = parseRcloneConf(text);
  const eol = eolOf(text);
  const lines = [...conf.lines];
  const sec = findSection(conf, name);
  if (!sec) {
    const block = [`[${name}]`];
    for (const [k, v] of Object.entries({ ...create, ...values })) if (v !== null) block.push(`${k} = ${v}`);
    let head = withFinalEol(lines.join(''), eol);
    // rclone separates sections with an empty line.
    if (head !== '' && !/(\r?\n){2}$/.test(head)) head += eol;
    return head + block.map((l) => l + eol).join('');
  }
  const add: string[] = [];
  const remove = new Set<number>();
  const entries = conf.sections.filter((s) => s.name === name).flatMap((s) => s.entries);
  for (const [k, v] of Object.entries(values)) {
    const hits = entries.filter((e) => e.key === k);
    if (v === null) {
      for (const h of hits) remove.add(h.line);
      continue;
    }
    if (hits.length === 0) {
      add.push(`${k} = ${v}`);
      continue;
    }
    // Earlier copies of a repeated key are dropped so the value we write is the one rclone reads.
    for (const h of hits.slice(0, -1)) remove.add(h.line);
    const last = hits.at(-1)!;
    const old = lines[last.line]!;
    const ending = old.slice(lineBody(old).length);
    const indent = /^\s*/.exec(old)![0];
    lines[last.line] = `${indent}${k} = ${v}${ending}`;
  }
  if (add.length > 0) {
    const at = sec.lastEntryLine;
    if (!lines[at]!.endsWith('\n')) lines[at] += eol;
    lines[at] += add.map((l) => l + eol).join('');
  }
  return lines.filter((_, i) => !remove.has(i)).join('');
}

/**
 * The `token` value rclone keeps for OAuth backends: Go's oauth2.Token as JSON. Go treats the zero time as "never
 * expires" and a past time as "refresh now"; an unknown expiry therefore becomes the zero time when there is no
 * refresh token (dropkey keeps the file fresh, rclone must not try to refresh) and 1970 when there is one (rclone
 * refreshes at once, which is safe).
 */
export function rcloneTokenJson(t: { accessToken: string; expiresAt: number | null; refreshToken?: string | null }): string {
  const token: Record<string, string> = { access_token: t.accessToken, token_type: 'bearer' };
  if (t.refreshToken) token['refresh_token'] = t.refreshToken;
  token['expiry'] = t.expiresAt !== null ? rfc3339(t.expiresAt) : t.refreshToken ? rfc3339(0) : '0001-01-01T00:00:00Z';
  return JSON.stringify(token);
}

export interface RcloneToken {
  accessToken: string | null;
  refreshToken: string | null;
  /** Epoch ms; null for the zero time or a missing expiry. */
  expiresAt: number | null;
}

/** Reads a remote's `token` value (the JSON above). */
export function parseRcloneToken(value: string, remote: string): RcloneToken {
  let j: unknown;
  try {
    j = JSON.parse(value);
  } catch {
    throw badFile(WHAT, `the token of remote "${remote}" is not JSON`);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw badFile(WHAT, `the token of remote "${remote}" is not a JSON object`);
  const o = j as Record<string, unknown>;
  const str = (k: string): string | null => (typeof o[k] === 'string' && o[k] !== '' ? (o[k] as string) : null);
  const expiry = str('expiry');
  const ms = expiry === null ? NaN : Date.parse(expiry);
  return {
    accessToken: str('access_token'),
    refreshToken: str('refresh_token'),
    expiresAt: Number.isFinite(ms) && ms > 0 ? ms : null,
  };
}
