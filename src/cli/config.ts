/**
 * The CLI's configuration: the only module of the CLI that reads environment variables (from ctx.env, never
 * process.env), and the one place that parses command options. Keep this module's imports tiny: `dropkey token`
 * loads it on its hot path (bench/token-startup.mjs).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { dropboxUrlsFromEnv, type DropboxUrls } from '../dropbox/hosts.js';
import type { CommandContext } from './context.js';

export const DEFAULT_CONNECTION = 'default';

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
  return {
    home,
    masterKey: nonEmpty(env['DROPKEY_MASTER_KEY']),
    urls: dropboxUrlsFromEnv(env),
    databaseUrl: nonEmpty(env['DROPKEY_DATABASE_URL']),
    connection: nonEmpty(env['DROPKEY_CONNECTION']) ?? DEFAULT_CONNECTION,
  };
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

/**
 * Connection and app names are ids (`default`, `dropbox_default`, `nightly-backup`): they end up in file names,
 * rclone section headers and Airflow connection ids, so keep them to a safe alphabet.
 */
export function checkName(command: string, kind: 'connection' | 'app', name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) {
    throw usageError(command, `invalid ${kind} name "${name.slice(0, 80)}": use 1-64 letters, digits, "_", "-" or "." (starting with a letter or digit)`);
  }
  return name;
}

/** Splits repeated/space- or comma-separated --scope values into one list without duplicates. */
export function scopeList(values: string[] | undefined): string[] | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const out: string[] = [];
  for (const v of values) for (const s of v.split(/[\s,]+/)) if (s && !out.includes(s)) out.push(s);
  return out;
}
