/**
 * The CLI's configuration (read through src/config.ts from ctx.env, which only the process context fills), and the one place that
 * parses command options. Keep this module's imports tiny: `dropkey token`
 * loads it on its hot path (bench/token-startup.mjs).
 */
import { parseArgs } from 'node:util';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { readConfig, type DropkeyConfig } from '../config.js';
import { DEFAULT_CONNECTION } from '../connections/names.js';
import type { CommandContext, CommandOptions } from './context.js';
import { didYouMean } from './suggest.js';

export { DEFAULT_CONNECTION };

/**
 * The loopback redirect URI `dropkey login` listens on by default. Dropbox compares redirect URIs exactly,
 * port and path included (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize), so it must be stable: this is the one users register in the
 * App Console. 127.0.0.1 rather than "localhost" (RFC 8252 §7.3 prefers the IP literal; "localhost" may resolve
 * to ::1 first). 53682 is the port rclone uses for the same job, so it is usually free and firewall-friendly.
 */
export const DEFAULT_LOGIN_PORT = 53682;
export const CALLBACK_PATH = '/callback';

export function redirectUriFor(port: number): string {
  return `http://127.0.0.1:${port}${CALLBACK_PATH}`;
}

/** The CLI's view of the configuration: the one every entry point reads (src/config.ts). */
export type CliConfig = DropkeyConfig;

/**
 * Reads the CLI's environment through readConfig: every bad variable is reported at once. Relative DROPKEY_HOME
 * values resolve against the command's working directory.
 */
export async function loadConfig(env: CommandContext['env'], cwd?: string): Promise<CliConfig> {
  return readConfig(env, cwd === undefined ? {} : { cwd });
}

type Options = CommandOptions;

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
    throw usageError(command, describeParseError(err, options));
  }
  if (parsed.positionals.length > positionals) {
    throw usageError(command, `unexpected argument "${parsed.positionals[positionals]}"`);
  }
  return parsed;
}

function describeParseError(err: unknown, options: Options): string {
  const e = err as { code?: string; message?: string };
  const msg = e.message ?? String(err);
  // Node's messages name the flag ("Unknown option '--foo'. To specify a positional..."): keep the first sentence.
  const quoted = /'(-[^']*)'/.exec(msg)?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option "${quoted ?? msg}"${quoted ? didYouMean(quoted.split('=')[0]!, flagNames(options)) : ''}`;
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

/** Every spelling of the options: --long, and -s for those with a short form. */
function flagNames(options: Options): string[] {
  const out = [...Object.keys(options).map((n) => `--${n}`), '--help'];
  for (const o of Object.values(options)) if (o.short) out.push(`-${o.short}`);
  return out;
}

/** A usage error for a subcommand that does not exist, with the closest one suggested. */
export function unknownSubcommand(command: string, sub: string | undefined, subcommands: readonly string[]): DropkeyError {
  const list = subcommands.length > 1 ? `${subcommands.slice(0, -1).join(', ')} or ${subcommands.at(-1)}` : subcommands.join('');
  if (sub === undefined) return usageError(command, `missing subcommand (${list})`);
  return usageError(command, `unknown subcommand "${sub}"${didYouMean(sub, subcommands)} (use ${list})`);
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
