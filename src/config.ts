/**
 * dropkey's configuration: every environment variable it reads, checked in one place. Entry points (the CLI's
 * process context, `dropkey serve`, `Dropkey.fromEnv`) pass their environment to readConfig and hand the result on;
 * nothing below them reads the environment (docs/decisions/0005-config-module.md).
 *
 * Every bad value is reported at once, each with what is accepted and how to fix it, so a deployment is fixed in one
 * round instead of one variable per restart. One rule for all variables: a value that is empty or only spaces
 * counts as unset, and values are trimmed.
 *
 * Keep the imports tiny: `dropkey token` loads this module on its hot path (bench/token-startup.mjs). The store
 * module (home resolution, database URL parsing) is imported lazily.
 */
import { accessSync, constants, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { DropkeyError, ErrorCodes } from './errors.js';
import { dropboxUrlsFromEnv, type DropboxUrls } from './dropbox/hosts.js';
import { DEFAULT_CONNECTION, NAME_PATTERN } from './connections/names.js';

export type Env = Record<string, string | undefined>;

/** pino's levels, the server logger's (src/server/logger.ts). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Where the store lives, parsed once from DROPKEY_DATABASE_URL (unset: SQLite in the data directory). */
export type DatabaseLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; connectionString: string; schema?: string };

export interface DropkeyConfig {
  /** The data directory, absolute (DROPKEY_HOME, else the XDG default: see resolveHome in src/store/index.ts). */
  home: string;
  /** DROPKEY_MASTER_KEY, when set (otherwise the store uses its key file). Never printed. */
  masterKey: string | undefined;
  /** DROPKEY_DATABASE_URL, when set: another SQLite file (file:) or PostgreSQL (postgres://). Never printed. */
  databaseUrl: string | undefined;
  /** The same, parsed. */
  database: DatabaseLocation;
  /** Dropbox base URLs (DROPKEY_DROPBOX_URL and the per-host overrides). */
  urls: DropboxUrls;
  /** DROPKEY_CONNECTION, else "default". */
  connection: string;
  /** DROPKEY_PUBLIC_URL as an origin, when set (`dropkey serve`; --public-url wins). */
  publicUrl: string | undefined;
  /** DROPKEY_LOG_LEVEL, else "info" (`dropkey serve`). */
  logLevel: LogLevel;
  /** DROPKEY_JOBS: false keeps background jobs off this `serve` instance. Default true. */
  jobs: boolean;
  /** DROPKEY_GC_HEADROOM: false keeps V8's default old-generation sizing in `serve`. Default true. */
  gcHeadroom: boolean;
  /** DROPKEY_DEBUG: errors print their causes and stacks. Default false. */
  debug: boolean;
  /** DROPKEY_PROXY_UPSTREAM_TIMEOUT in ms (`serve`): how long the proxy waits for Dropbox to answer an RPC call. Unset: the server's default (60 s). */
  proxyUpstreamTimeoutMs: number | undefined;
  /** DROPKEY_AUDIT_RETENTION_DAYS in ms (`serve`): audit entries older than this are pruned. Unset: 90 days. */
  auditRetentionMs: number | undefined;
  /** DROPKEY_REFRESH_CONCURRENCY (`serve`): background refreshes in flight at most. Unset: 32. */
  refreshConcurrency: number | undefined;
}

/** One bad variable: what is wrong, what is accepted, what to do. `variable` names it; the value is never a secret here. */
export interface ConfigProblem {
  variable: string;
  problem: string;
  accepted: string;
  fix: string;
}

export interface ReadConfigOptions {
  /** Relative DROPKEY_HOME values resolve against this. Default: process.cwd(). */
  cwd?: string;
  platform?: NodeJS.Platform;
  homedir?: string;
  /** The file system calls the data directory check makes (tests inject failures root cannot cause). */
  fs?: HomeFs;
}

export type HomeFs = { statSync: (path: string) => Stats; accessSync: (path: string, mode: number) => void };

/** The variables dropboxUrlsFromEnv reads (src/dropbox/hosts.ts). */
export const DROPBOX_URL_VARIABLES = [
  'DROPKEY_DROPBOX_URL',
  'DROPKEY_DROPBOX_AUTHORIZE_URL',
  'DROPKEY_DROPBOX_TOKEN_URL',
  'DROPKEY_DROPBOX_API_URL',
  'DROPKEY_DROPBOX_CONTENT_URL',
  'DROPKEY_DROPBOX_NOTIFY_URL',
] as const;

/** The one rule: unset, empty and blank are the same; anything else is trimmed. */
export function nonEmpty(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  return t === '' ? undefined : t;
}

const ON = ['on', 'true', 'yes', '1'];
const OFF = ['off', 'false', 'no', '0'];
const FLAG_ACCEPTED = `on, true, yes, 1 or off, false, no, 0`;

/** On/off variables: the words a shell user would write either way, so that "false" can never mean "on". */
export function parseFlag(v: string | undefined): boolean | undefined {
  const t = nonEmpty(v)?.toLowerCase();
  if (t === undefined) return undefined;
  if (ON.includes(t)) return true;
  if (OFF.includes(t)) return false;
  return undefined;
}

/** DROPKEY_DEBUG for the error reporter, which cannot fail: a value it does not understand counts as on. */
export function debugEnabled(env: Env): boolean {
  const v = nonEmpty(env['DROPKEY_DEBUG']);
  return v !== undefined && parseFlag(v) !== false;
}

/** A value shown in an error: quoted, and cut short in case something else was pasted there. */
function shown(v: string): string {
  return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
}

/**
 * Reads and checks every variable dropkey uses. Throws one DROPKEY_BAD_INPUT error listing every problem
 * (details.problems holds them as data); returns the normalized configuration otherwise.
 */
export async function readConfig(env: Env, options: ReadConfigOptions = {}): Promise<DropkeyConfig> {
  const problems: ConfigProblem[] = [];
  const { resolveHome, selectDriver, storePaths } = await import('./store/index.js');

  const home = resolveHome(env, options.platform ?? process.platform, {
    cwd: options.cwd ?? process.cwd(),
    ...(options.homedir === undefined ? {} : { homedir: options.homedir }),
  });

  const masterKey = nonEmpty(env['DROPKEY_MASTER_KEY']);
  if (masterKey !== undefined) {
    const { keyringFromMasterKey } = await import('./store/cipher.js');
    try {
      keyringFromMasterKey(masterKey);
    } catch (err) {
      // The cipher's message says what is wrong (length, an empty item, a repeated key) and never shows the key.
      problems.push({
        variable: 'DROPKEY_MASTER_KEY',
        problem: (err as Error).message,
        accepted: 'one or more 32-byte keys, each 64 hex digits or base64, comma-separated (the first one is active)',
        fix: 'generate one with "dropkey keys generate", or unset it to use the key file in the data directory',
      });
    }
  }

  const databaseUrl = nonEmpty(env['DROPKEY_DATABASE_URL']);
  let database: DatabaseLocation = { kind: 'sqlite', path: storePaths(home).database };
  try {
    database = selectDriver(databaseUrl, storePaths(home));
  } catch (err) {
    // selectDriver's messages never echo the URL: it may hold a password.
    problems.push({
      variable: 'DROPKEY_DATABASE_URL',
      problem: (err as Error).message,
      accepted: 'file:///absolute/path/dropkey.db (SQLite), postgres://user:password@host:5432/database[?schema=NAME] (PostgreSQL)',
      fix: 'give one of those, or unset it to use the data directory',
    });
  }

  // The data directory matters only when something lives there: the SQLite file, or the key file.
  if (database.kind === 'sqlite' || masterKey === undefined) {
    const p = homeProblem(home, options.fs ?? { statSync, accessSync });
    if (p) {
      const variable = nonEmpty(env['DROPKEY_HOME']) === undefined ? 'DROPKEY_HOME (unset: the default data directory)' : 'DROPKEY_HOME';
      problems.push({
        variable,
        problem: p,
        accepted: 'a directory this user can read and write, or a path where one can be created (mode 0700)',
        fix: `point DROPKEY_HOME at such a directory, or fix the path ${shown(home)}`,
      });
    }
  }

  for (const name of DROPBOX_URL_VARIABLES) {
    const v = nonEmpty(env[name]);
    if (v !== undefined && !isHttpUrl(v)) {
      problems.push({
        variable: name,
        problem: `not an http(s) URL: ${name}=${shown(v)}`,
        accepted: 'a full base URL such as http://127.0.0.1:8080 (the address dropkey emulator prints)',
        fix: 'give such a URL, or unset the variable to use Dropbox itself',
      });
    }
  }
  const urls = dropboxUrlsFromEnv(Object.fromEntries(DROPBOX_URL_VARIABLES.map((n) => [n, nonEmpty(env[n])])));

  const connectionValue = nonEmpty(env['DROPKEY_CONNECTION']);
  if (connectionValue !== undefined && !NAME_PATTERN.test(connectionValue)) {
    problems.push({
      variable: 'DROPKEY_CONNECTION',
      problem: `DROPKEY_CONNECTION=${shown(connectionValue)} is not a connection name`,
      accepted: 'a name that starts with a letter or digit and uses only letters, digits, "_", "." and "-" (at most 64 characters)',
      fix: `give such a name (one from the list of connections), or unset it to use "${DEFAULT_CONNECTION}"`,
    });
  }

  const publicValue = nonEmpty(env['DROPKEY_PUBLIC_URL']);
  let publicUrl: string | undefined;
  if (publicValue !== undefined) {
    const r = checkPublicUrl(publicValue);
    if ('origin' in r) publicUrl = r.origin;
    else {
      problems.push({
        variable: 'DROPKEY_PUBLIC_URL',
        problem: `DROPKEY_PUBLIC_URL=${shown(publicValue)}: ${r.problem}`,
        accepted: 'an origin without a path: https://HOST[:PORT], or http:// for localhost and 127.0.0.1',
        fix: r.fix ?? 'give such an origin, or unset it to use http://HOST:PORT of dropkey serve',
      });
    }
  }

  const levelValue = nonEmpty(env['DROPKEY_LOG_LEVEL'])?.toLowerCase();
  let logLevel: LogLevel = 'info';
  if (levelValue !== undefined) {
    if ((LOG_LEVELS as readonly string[]).includes(levelValue)) logLevel = levelValue as LogLevel;
    else {
      problems.push({
        variable: 'DROPKEY_LOG_LEVEL',
        problem: `DROPKEY_LOG_LEVEL=${shown(levelValue)} is not a log level`,
        accepted: LOG_LEVELS.join(', '),
        fix: 'set one of those, or unset it for "info"',
      });
    }
  }

  const flag = (name: string, meaning: string): boolean | undefined => {
    const v = nonEmpty(env[name]);
    const b = parseFlag(v);
    if (v !== undefined && b === undefined) {
      problems.push({ variable: name, problem: `${name}=${shown(v)} is neither on nor off`, accepted: FLAG_ACCEPTED, fix: meaning });
    }
    return b;
  };
  const jobs = flag('DROPKEY_JOBS', 'set off to keep background jobs off this instance, or unset it (on)') ?? true;
  const gcHeadroom = flag('DROPKEY_GC_HEADROOM', "set off to keep V8's default heap sizing, or unset it (on)") ?? true;
  const debug = flag('DROPKEY_DEBUG', 'set 1 to print the causes of errors, or unset it (off)') ?? false;

  const timeoutValue = nonEmpty(env['DROPKEY_PROXY_UPSTREAM_TIMEOUT'])?.trim();
  let proxyUpstreamTimeoutMs: number | undefined;
  if (timeoutValue !== undefined) {
    const n = /^\d+$/.test(timeoutValue) ? Number(timeoutValue) : NaN;
    if (Number.isInteger(n) && n >= 1 && n <= 3600) proxyUpstreamTimeoutMs = n * 1000;
    else {
      problems.push({
        variable: 'DROPKEY_PROXY_UPSTREAM_TIMEOUT',
        problem: `DROPKEY_PROXY_UPSTREAM_TIMEOUT=${shown(timeoutValue)} is not a whole number of seconds from 1 to 3600`,
        accepted: 'a whole number of seconds from 1 to 3600',
        fix: 'e.g. DROPKEY_PROXY_UPSTREAM_TIMEOUT=60, or unset it for the default (60)',
      });
    }
  }

  const wholeNumber = (variable: string, min: number, max: number, example: string, dflt: string): number | undefined => {
    const v = nonEmpty(env[variable])?.trim();
    if (v === undefined) return undefined;
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (Number.isInteger(n) && n >= min && n <= max) return n;
    problems.push({
      variable,
      problem: `${variable}=${shown(v)} is not a whole number from ${min} to ${max}`,
      accepted: `a whole number from ${min} to ${max}`,
      fix: `e.g. ${variable}=${example}, or unset it for the default (${dflt})`,
    });
    return undefined;
  };
  const retentionDays = wholeNumber('DROPKEY_AUDIT_RETENTION_DAYS', 1, 36_500, '365', '90 days');
  const auditRetentionMs = retentionDays === undefined ? undefined : retentionDays * 86_400_000;
  const refreshConcurrency = wholeNumber('DROPKEY_REFRESH_CONCURRENCY', 1, 256, '64', '32');

  if (problems.length > 0) throw configError(problems);
  return {
    home,
    masterKey,
    databaseUrl,
    database,
    urls,
    connection: connectionValue ?? DEFAULT_CONNECTION,
    publicUrl,
    logLevel,
    jobs,
    gcHeadroom,
    debug,
    proxyUpstreamTimeoutMs,
    auditRetentionMs,
    refreshConcurrency,
  };
}

/** One error for every problem: each one's line, then what it accepts and how to fix it. */
export function configError(problems: ConfigProblem[]): DropkeyError {
  const details = { problems: problems.map((p) => ({ variable: p.variable, problem: p.problem })) };
  if (problems.length === 1) {
    const p = problems[0]!;
    return new DropkeyError(ErrorCodes.BAD_INPUT, `${p.problem}.`, { hint: `Accepted: ${p.accepted}.\n${capitalize(p.fix)}.`, details });
  }
  const lines = problems.map((p) => `  - ${p.problem}\n    accepted: ${p.accepted}\n    fix: ${p.fix}`);
  return new DropkeyError(ErrorCodes.BAD_INPUT, `${problems.length} environment variables need fixing:\n${lines.join('\n')}`, {
    hint: 'Fix each value as shown, or unset the variable to take its default.',
    details,
  });
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/**
 * What stands in the way of using `home` as the data directory, if anything: a file where the directory should be,
 * a file above it (ENOTDIR), or a directory this user cannot read or write. A missing directory is fine: the store
 * creates it.
 */
export function homeProblem(home: string, fs: HomeFs): string | undefined {
  let st: Stats;
  try {
    st = fs.statSync(home);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ENOTDIR') {
      // Walk up to the file that stands where a directory should be.
      for (let p = dirname(home); p !== dirname(p); p = dirname(p)) {
        try {
          if (!fs.statSync(p).isDirectory()) return `the data directory ${home} is under ${p}, which is a file, not a directory`;
        } catch {
          // not there or not reachable: keep walking up
        }
      }
      return `the data directory ${home} is under a file, not a directory`;
    }
    if (code === 'EACCES' || code === 'EPERM') return `the data directory ${home} cannot be reached: permission denied (${code}) on a directory above it`;
    return `the data directory ${home} cannot be checked (${code ?? (err as Error).message})`;
  }
  if (!st.isDirectory()) return `the data directory ${home} is a file, not a directory`;
  try {
    fs.accessSync(home, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (err) {
    return `the data directory ${home} cannot be read and written by this user (${(err as NodeJS.ErrnoException).code ?? 'no access'})`;
  }
  return undefined;
}

/**
 * A public URL is the origin users and Dropbox reach `dropkey serve` at. The OAuth redirect URI is built on it, and
 * Dropbox accepts http:// redirect URIs only for localhost (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize).
 */
export function checkPublicUrl(value: string): { origin: string } | { problem: string; fix?: string } {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return { problem: 'not a URL', fix: 'for example https://dropkey.example.com' };
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return { problem: 'must start with https:// (or http:// for localhost)' };
  if (u.search || u.hash) return { problem: 'must not have a query or fragment' };
  if (u.pathname !== '/' && u.pathname !== '') {
    return { problem: 'must be an origin without a path (dropkey serves from the root)', fix: 'give your reverse proxy its own host name, e.g. https://dropkey.example.com' };
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
  if (u.protocol === 'http:' && !loopback) {
    return {
      problem: 'Dropbox accepts http:// redirect URIs only for localhost and 127.0.0.1; use https:// for any other host',
      fix: 'put dropkey behind a TLS-terminating reverse proxy and give its https:// origin',
    };
  }
  return { origin: u.origin };
}
