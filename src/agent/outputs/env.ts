/**
 * `env`: a dotenv file with the token under the names the consumer reads (DROPBOX_ACCESS_TOKEN, duplicity's
 * DPBX_ACCESS_TOKEN, ...) and its expiry. The file is updated in place: our variables are replaced where they
 * stand (an `export ` prefix is kept), missing ones are appended, and every other line and comment is kept, so an
 * env file shared with other settings (docker `--env-file`, systemd `EnvironmentFile=`) stays theirs.
 */
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { rfc3339 } from './json.js';
import type { RenderOutput } from './types.js';

export interface EnvOutputOptions {
  /** Variables that receive the access token (at least one). */
  variables: readonly string[];
  /** The variable that receives the expiry (RFC 3339, UTC), or null for none. */
  expiryVariable: string | null;
}

export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ASSIGNMENT = /^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)(\s*=)(.*)$/;

/** Whether a value opens a double- or single-quoted string that the line does not close (a multi-line value). */
function opensMultiline(value: string): '"' | "'" | null {
  const v = value.trimStart();
  const q = v[0];
  if (q !== '"' && q !== "'") return null;
  for (let i = 1; i < v.length; i++) {
    if (q === '"' && v[i] === '\\') {
      i++;
      continue;
    }
    if (v[i] === q) return null;
  }
  return q;
}

/** Bare when the value is plain token characters (always, for Dropbox tokens), else double-quoted and escaped. */
function envValue(v: string): string {
  return /^[A-Za-z0-9._~+/=:-]*$/.test(v) ? v : `"${v.replace(/(["\\$`])/g, '\\$1').replace(/\n/g, '\\n')}"`;
}

export const renderEnv: RenderOutput<EnvOutputOptions> = (previous, snapshot, options) => {
  const values = new Map<string, string | null>();
  for (const name of options.variables) values.set(name, envValue(snapshot.accessToken));
  if (options.expiryVariable !== null) values.set(options.expiryVariable, snapshot.expiresAt === null ? null : rfc3339(snapshot.expiresAt));

  const lines = previous === null || previous === '' ? [] : previous.replace(/\r?\n$/, '').split(/\r?\n/);
  const out: string[] = [];
  const written = new Set<string>();
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (quote !== null) {
      // Inside another variable's multi-line quoted value: kept as is until the quote closes.
      out.push(line);
      if (line.includes(quote)) quote = null;
      continue;
    }
    if (line.trim() === '' || line.trimStart().startsWith('#')) {
      out.push(line);
      continue;
    }
    const m = ASSIGNMENT.exec(line);
    if (!m) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `line ${i + 1} is not a NAME=value line, so the file is not a dotenv file and was not changed.`, {
        hint: 'Fix or remove that line, or point the output at a file of its own.',
      });
    }
    const name = m[2]!;
    if (!values.has(name)) {
      out.push(line);
      quote = opensMultiline(m[4]!);
      continue;
    }
    // A variable of ours seen twice keeps only its first place.
    if (written.has(name)) continue;
    written.add(name);
    const value = values.get(name);
    if (value !== null && value !== undefined) out.push(`${m[1]}${name}${m[3]}${value}`);
  }
  for (const [name, value] of values) {
    if (!written.has(name) && value !== null) out.push(`${name}=${value}`);
  }
  return `${out.join('\n')}\n`;
};
