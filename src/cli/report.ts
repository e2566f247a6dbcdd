import { ErrorCodes, isDropkeyError } from '../errors.js';
import { debugEnabled } from '../config.js';
import type { CommandContext } from './context.js';
import { adviceLines } from './fix.js';
import { terminalSafe } from './output.js';

/** Exit codes: 0 ok, 1 a problem was found or an operation failed, 2 bad usage, 130 interrupted. */
export const ExitCodes = { OK: 0, FAILED: 1, USAGE: 2, INTERRUPTED: 130 } as const;

/**
 * The only place where errors become exit codes and messages. Messages are written to stderr; a DropkeyError's
 * hint and its fix (as the command to run, ./fix.ts) follow on their own lines. Unknown errors print their message
 * only (never a dump of objects that could hold secrets) unless DROPKEY_DEBUG is set.
 */
export function reportError(err: unknown, ctx: Pick<CommandContext, 'stderr' | 'env'>): number {
  // Messages quote Dropbox (error summaries, descriptions, whatever answered in its place): no raw controls.
  const say = (text: string): void => void ctx.stderr.write(terminalSafe(text));
  if (isDropkeyError(err)) {
    say(`dropkey: ${err.message}\n`);
    for (const line of adviceLines(err)) say(`  ${line}\n`);
    if (debugEnabled(ctx.env) && err.cause) say(`  cause: ${String((err.cause as Error)?.stack ?? err.cause)}\n`);
    if (err.code === ErrorCodes.CANCELLED) return ExitCodes.INTERRUPTED;
    if (err.code === ErrorCodes.BAD_INPUT) return ExitCodes.USAGE;
    return ExitCodes.FAILED;
  }
  // parseArgs errors (unknown option, missing value) are usage errors.
  const e = err as { code?: string; message?: string; stack?: string };
  if (typeof e?.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS')) {
    say(`dropkey: ${e.message}\n  Run the command with --help to see its options.\n`);
    return ExitCodes.USAGE;
  }
  say(`dropkey: unexpected error: ${e?.message ?? String(err)}\n`);
  if (debugEnabled(ctx.env)) say(`${e?.stack ?? ''}\n`);
  else say('  This is a bug in dropkey. Run again with DROPKEY_DEBUG=1 for details and report it.\n');
  return ExitCodes.FAILED;
}

