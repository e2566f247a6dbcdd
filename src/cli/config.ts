/**
 * The CLI's configuration: the only module of the CLI that reads environment variables (from ctx.env, never
 * process.env), and the one place that parses command options. Keep this module's imports tiny: `dropkey token`
 * loads it on its hot path (bench/token-startup.mjs).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { dropboxUrlsFromEnv, type DropboxUrls } from '../dropbox/hosts.js';
import { DEFAULT_CONNECTION } from '../connections/names.js';
import type { CommandContext } from './context.js';

export { DEFAULT_CONNECTION };

/**
 * The loopback redirect URI `dropkey login` listens on by default. Dropbox compares redirect URIs exactly,
 * port and path included (dropbox-api.md §1.1), so it must be stable: this is the one users register in the
 * App Console. 127.0.0.1 rather than "localhost" (RFC 8252 §7.3 prefers the IP literal; "localhost" may resolve
 * to ::1 first). 53682 is the port rclone uses for the same job, so it is usually free and firewall-friendly.
 */
export const DEFAULT_LOGIN_PORT = 53682;
export const CALLBACK_PATH = '/callback';

export function redirectUriFor(port: number): string {
  return `http://127.0.0.1:${port}${CALLBACK_PATH}`;
}

export interface CliConfig {
  /** Data directory (DROPKEY_HOME, else the XDG default chosen by the store). */
  home: string;
  /** DROPKEY_MASTER_KEY, when set (otherwise the store uses its key file). Never printed. */
  masterKey: string | undefined;
  /** Dropbox base URLs (DROPKEY_DROPBOX_URL and the per-host overrides). */
  urls: DropboxUrls;
  /** DROPKEY_DATABASE_URL, when set: another SQLite file (file:) or PostgreSQL (postgres://). Never printed. */
  databaseUrl: string | undefined;
  /** DROPKEY_CONNECTION, else "default". */
  connection: string;
}

/**
 * Reads the CLI's environment. The home default comes from the store's resolveHome (XDG rules), loaded lazily
 * so that commands that never touch the store do not pay for it.
 */
export async function loadConfig(env: CommandContext['env']): Promise<CliConfig> {
  let home = nonEmpty(env['DROPKEY_HOME']);
  if (home === undefined) {
    const { resolveHome } = await import('../store/index.js');
    home = resolveHome(env);
  }
  checkUrlVariables(env);
  return {
    home,
    masterKey: nonEmpty(env['DROPKEY_MASTER_KEY']),
    urls: dropboxUrlsFromEnv(env),
    databaseUrl: nonEmpty(env['DROPKEY_DATABASE_URL']),
    connection: nonEmpty(env['DROPKEY_CONNECTION']) ?? DEFAULT_CONNECTION,
  };
}

/** The variables dropboxUrlsFromEnv reads (src/dropbox/hosts.ts). */
const URL_VARIABLES = [
  'DROPKEY_DROPBOX_URL',
  'DROPKEY_DROPBOX_AUTHORIZE_URL',
  'DROPKEY_DROPBOX_TOKEN_URL',
  'DROPKEY_DROPBOX_API_URL',
  'DROPKEY_DROPBOX_CONTENT_URL',
  'DROPKEY_DROPBOX_NOTIFY_URL',
] as const;

/**
 * A Dropbox URL that is not http(s) can never work, yet would otherwise surface as a network failure retried for
 * half a minute and reported as "usually temporary". Every bad variable is named at once; values are not secrets
 * but are cut short in case something else was pasted there.
 */
function checkUrlVariables(env: CommandContext['env']): void {
  const bad: string[] = [];
  for (const name of URL_VARIABLES) {
    const v = nonEmpty(env[name]);
    if (v === undefined) continue;
    let ok = false;
    try {
      const u = new URL(v);
      ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
    } catch {
      ok = false;
    }
    if (!ok) bad.push(`${name}=${JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v)}`);
  }
  if (bad.length > 0) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `not an http(s) URL: ${bad.join(', ')}.`, {
      hint: 'Give a full base URL such as http://127.0.0.1:8080 (the address dropkey emulator prints), or unset the variable to use Dropbox itself.',
    });
  }
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}

type Options = NonNullable<ParseArgsConfig['options']>;

export type ParsedOptions<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: boolean; tokens: false }>>;

/**
 * Strict option parsing for one command: unknown flags, missing values and (unless allowed) stray positionals
 * become a usage error that names the offending argument and the command's --help.
 */
export function parseOptions<O extends Options>(
  command: string,
  argv: string[],
  options: O,
  { positionals = 0 }: { positionals?: number } = {},
): ParsedOptions<O> {
  let parsed: ParsedOptions<O>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: positionals > 0, tokens: false });
  } catch (err) {
    throw usageError(command, describeParseError(err));
  }
  if (parsed.positionals.length > positionals) {
    throw usageError(command, `unexpected argument "${parsed.positionals[positionals]}"`);
  }
  return parsed;
}

function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const msg = e.message ?? String(err);
  // Node's messages name the flag ("Unknown option '--foo'. To specify a positional..."): keep the first sentence.
  const quoted = /'(-[^']*)'/.exec(msg)?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option "${quoted ?? msg}"`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      // Node says "Option '--json' does not take an argument" for `--json=3`: not a missing value.
      if (quoted && /does not take an argument/.test(msg)) return `option "${quoted.split(/[ ,=]/)[0]}" takes no value`;
      // "--min-valid -5": the value starts with a dash, so Node cannot tell it from another option.
      if (quoted && /is ambiguous/.test(msg)) {
        const flag = quoted.split(/[ ,=]/)[0];
        return `option "${flag}" needs a value (a value that starts with "-" must be written ${flag}=VALUE)`;
      }
      return quoted ? `option "${quoted.split(/[ ,]/)[0]}" needs a value` : msg.split('. ')[0] ?? msg;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${/'([^']*)'/.exec(msg)?.[1] ?? ''}"`;
    default:
      return msg.split('. ')[0] ?? msg;
  }
}

export function usageError(command: string, what: string): DropkeyError {
  return new DropkeyError(ErrorCodes.BAD_INPUT, `${command}: ${what}.`, {
    hint: `Run "dropkey ${command} --help" to see its options.`,
  });
}

/** Parses a non-negative integer option (seconds, ports). */
export function intOption(command: string, name: string, value: string | undefined, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim())) throw usageError(command, `--${name} must be a whole number, got "${value}"`);
  const n = Number(value.trim());
  if (n < min || n > max) throw usageError(command, `--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Splits repeated/space- or comma-separated --scope values into one list without duplicates. */
export function scopeList(values: string[] | undefined): string[] | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const out: string[] = [];
  for (const v of values) for (const s of v.split(/[\s,]+/)) if (s && !out.includes(s)) out.push(s);
  return out;
}
