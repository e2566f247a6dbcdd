/**
 * Progress for waits a person would otherwise sit through in silence (a refresh Dropbox is slow to answer, another
 * process's lock, the browser during login). Shown only on a terminal: on stderr, never on stdout, never when stderr
 * is not a TTY (a log, a pipe, CI) and never with --json. One line, rewritten in place once a second after the
 * first second, and erased when the wait ends.
 */
import type { CommandContext } from './context.js';

/** How long a wait goes on before progress is shown. */
export const PROGRESS_DELAY_MS = 1_000;
const TICK_MS = 1_000;

export interface ProgressTimers {
  now(): number;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

const realTimers: ProgressTimers = {
  now: () => Date.now(),
  setInterval: (fn, ms) => {
    const h = setInterval(fn, ms);
    h.unref(); // progress never keeps the process alive
    return h;
  },
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export type ProgressStream = Pick<CommandContext['stderr'], 'write' | 'isTTY'>;

/** Whether progress may be shown: stderr is a terminal and the output is not JSON. */
export function progressEnabled(stderr: ProgressStream | undefined, json = false): stderr is ProgressStream {
  return stderr !== undefined && stderr.isTTY === true && !json;
}

/**
 * The stream a command's waits may show progress on, or undefined: stderr when it is a terminal and the command
 * was not asked for --json (its arguments are looked at, so every command is covered the same way).
 */
export function progressStream(ctx: Partial<Pick<CommandContext, 'stderr' | 'argv'>>): ProgressStream | undefined {
  const json = ctx.argv?.some((a) => a === '--json') ?? false;
  return progressEnabled(ctx.stderr, json) ? ctx.stderr : undefined;
}

export interface Progress {
  /** Ends the wait: erases the line if one was shown; returns how long the wait lasted (ms). */
  stop(): number;
  /** Whether a progress line has been shown. */
  readonly shown: boolean;
}

const NONE: Progress = { stop: () => 0, shown: false };

/**
 * Starts a wait. `text(elapsedMs)` is the line to show (no newline, no controls of its own); it is shown only when
 * `progressEnabled`, from PROGRESS_DELAY_MS on. The caller stops it (finally) when the wait ends.
 */
export function startProgress(
  stderr: ProgressStream | undefined,
  text: (elapsedMs: number) => string,
  o: { json?: boolean; timers?: ProgressTimers } = {},
): Progress {
  if (!progressEnabled(stderr, o.json)) return NONE;
  const timers = o.timers ?? realTimers;
  const started = timers.now();
  let shown = false;
  let stopped = false;
  let last = '';
  const handle = timers.setInterval(() => {
    const elapsed = timers.now() - started;
    if (stopped || elapsed < PROGRESS_DELAY_MS) return;
    const line = text(elapsed);
    if (line === last) return;
    shown = true;
    last = line;
    // \r and "erase line" (CSI K): the line is rewritten in place.
    stderr.write(`\r\u001b[K${line}`);
  }, TICK_MS / 4);
  return {
    get shown() {
      return shown;
    },
    stop() {
      if (!stopped) {
        stopped = true;
        timers.clearInterval(handle);
        if (shown) stderr.write('\r\u001b[K');
      }
      return timers.now() - started;
    },
  };
}

/** "12 s", "4 min 48 s". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
}
