/**
 * Reading secrets and pasted codes from standard input. `--secret -`, `--refresh-token -`, `--access-token -` and
 * `--token -` read here so that secrets stay out of shell history and `ps` output.
 */
import { StringDecoder } from 'node:string_decoder';
import { DropkeyError, ErrorCodes } from '../errors.js';
import type { CommandContext } from './context.js';

/** No secret or code is anywhere near this long; a bigger input is a mistake (a file piped by accident). */
const MAX_INPUT = 64 * 1024;

type Ctx = Pick<CommandContext, 'stdin' | 'stderr' | 'signal'>;

function cancelled(): DropkeyError {
  return new DropkeyError(ErrorCodes.CANCELLED, 'cancelled; nothing was changed.');
}

/**
 * Reads a secret. On a terminal: prompts on stderr and reads one line with echo off (raw mode, so the secret is
 * never shown). Otherwise: reads standard input to its end, dropping one trailing newline only: anything else
 * (quotes, spaces) is kept so that `dropkey doctor` can point it out instead of hiding it.
 */
export async function readSecret(ctx: Ctx, what: string): Promise<string> {
  const stdin = ctx.stdin as Ctx['stdin'] & { setRawMode?: (raw: boolean) => unknown };
  if (stdin.isTTY && typeof stdin.setRawMode === 'function') {
    ctx.stderr.write(`Paste the ${what} (input is hidden), then press Enter: `);
    return readHidden(ctx, stdin as Ctx['stdin'] & { setRawMode: (raw: boolean) => unknown });
  }
  const text = await readStdin(ctx, {
    what,
    line: false,
    tooLong: () =>
      new DropkeyError(ErrorCodes.BAD_INPUT, `the ${what} read from standard input is longer than ${MAX_INPUT} bytes.`, {
        hint: 'Pipe only the value itself, e.g.: printf %s "$VALUE" | dropkey ...',
      }),
    empty: () =>
      new DropkeyError(ErrorCodes.BAD_INPUT, `no ${what} on standard input.`, {
        hint: `Pipe it in (printf %s "$VALUE" | dropkey ...) or run the command in a terminal to paste it.`,
      }),
  });
  return text.replace(/\r?\n$/, '');
}

interface StdinRead {
  /** What is read, for the error messages ("app secret"). */
  what: string;
  /** Resolve at the first newline (the line without it) instead of at the end of input. */
  line: boolean;
  /** Rejects with timedOut() if nothing complete arrived by then. */
  timeoutMs?: number;
  timedOut?: () => DropkeyError;
  tooLong: () => DropkeyError;
  /** At the end of input with nothing but blanks read. */
  empty: () => DropkeyError;
}

/**
 * The one reader of standard input when it is not a terminal: collects text up to the end of input (or the first
 * newline), at most MAX_INPUT bytes, and stops on Ctrl-C (the signal) or the timeout. Listeners are removed and the
 * stream paused afterwards so that the process can exit.
 */
function readStdin(ctx: Ctx, o: StdinRead): Promise<string> {
  const decoder = new StringDecoder('utf8');
  let text = '';
  let size = 0;
  return new Promise<string>((resolve, reject) => {
    const timer = o.timeoutMs === undefined ? undefined : setTimeout(() => done(o.timedOut?.() ?? cancelled()), o.timeoutMs);
    const done = (err: DropkeyError | undefined, value = ''): void => {
      if (timer) clearTimeout(timer);
      ctx.stdin.off('data', onData);
      ctx.stdin.off('end', onEnd);
      ctx.stdin.off('error', onError);
      ctx.signal.removeEventListener('abort', onAbort);
      ctx.stdin.pause();
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (c: Buffer | string): void => {
      const b = typeof c === 'string' ? Buffer.from(c) : c;
      size += b.length;
      text += decoder.write(b);
      const nl = o.line ? text.indexOf('\n') : -1;
      if (nl >= 0) done(undefined, text.slice(0, nl).replace(/\r$/, ''));
      else if (size > MAX_INPUT) done(o.tooLong());
    };
    const onEnd = (): void => {
      text += decoder.end();
      if (text.trim() === '') done(o.empty());
      else done(undefined, text);
    };
    const onError = (e: Error): void => done(new DropkeyError(ErrorCodes.BAD_INPUT, `could not read the ${o.what} from standard input: ${e.message}`));
    const onAbort = (): void => done(cancelled());
    if (ctx.signal.aborted) return onAbort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    ctx.stdin.on('data', onData);
    ctx.stdin.on('end', onEnd);
    ctx.stdin.on('error', onError);
    ctx.stdin.resume();
  });
}

function readHidden(ctx: Ctx, stdin: Ctx['stdin'] & { setRawMode: (raw: boolean) => unknown }): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let value = '';
    const finish = (err?: DropkeyError): void => {
      stdin.setRawMode(false);
      stdin.off('data', onData);
      ctx.signal.removeEventListener('abort', onAbort);
      stdin.pause();
      ctx.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (c: Buffer | string): void => {
      for (const ch of typeof c === 'string' ? c : c.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          if (value === '') return finish(new DropkeyError(ErrorCodes.BAD_INPUT, 'nothing was pasted.', { hint: 'Run the command again and paste the value.' }));
          return finish();
        }
        if (ch === '\u0003') return finish(cancelled()); // Ctrl-C: raw mode swallows SIGINT
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
        if (value.length > MAX_INPUT) return finish(new DropkeyError(ErrorCodes.BAD_INPUT, 'the pasted value is too long.'));
      }
    };
    const onAbort = (): void => finish(cancelled());
    stdin.setRawMode(true);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    stdin.on('data', onData);
    stdin.resume();
  });
}

/**
 * Reads one line (echoed: authorization codes are single-use and short-lived), for `login --no-redirect`.
 * Resolves with the line without its newline; rejects on end of input, Ctrl-C or the timeout.
 */
export async function readLine(ctx: Ctx, what: string, timeoutMs: number): Promise<string> {
  const line = await readStdin(ctx, {
    what,
    line: true,
    timeoutMs,
    timedOut: () =>
      new DropkeyError(ErrorCodes.OAUTH_FAILED, `no ${what} was pasted within ${Math.round(timeoutMs / 1000)} seconds; nothing was saved.`, {
        hint: 'Run the same dropkey login command again (use --timeout SECONDS for more time).',
      }),
    tooLong: () => new DropkeyError(ErrorCodes.BAD_INPUT, `the pasted ${what} is too long.`),
    empty: () =>
      new DropkeyError(ErrorCodes.BAD_INPUT, `standard input closed before a ${what} was pasted; nothing was saved.`, {
        hint: 'Run dropkey login --no-redirect in a terminal, open the URL, and paste the code Dropbox shows.',
      }),
  });
  // Input that ended without a newline: the last line as it is.
  return line.replace(/\r?\n?$/, '');
}

/**
 * Asks a yes/no question on a terminal (the question on stderr, the answer read as an echoed line); true only for
 * "y" or "yes". Callers decide first what happens without a terminal: this never waits on a pipe.
 */
export async function confirm(ctx: Ctx, question: string): Promise<boolean> {
  ctx.stderr.write(`${question} [y/N] `);
  const answer = await readStdin(ctx, {
    what: 'answer',
    line: true,
    tooLong: () => new DropkeyError(ErrorCodes.BAD_INPUT, 'the answer is too long.'),
    // End of input (Ctrl-D) is a "no"; Ctrl-C stays a cancellation.
    empty: () => new DropkeyError(ErrorCodes.CANCELLED, 'no answer.', { details: { reason: 'end_of_input' } }),
  }).catch((err: unknown) => {
    if (err instanceof DropkeyError && err.details?.['reason'] === 'end_of_input') return '';
    throw err;
  });
  return /^\s*y(es)?\s*$/i.test(answer);
}
