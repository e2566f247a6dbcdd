import { writeSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { ParseArgsConfig } from 'node:util';

/** A command's flags, as node:util parseArgs takes them. */
export type CommandOptions = NonNullable<ParseArgsConfig['options']>;

/**
 * Everything a command may touch from the outside world. Commands never read `process.*` directly,
 * so tests can call them in-process with their own streams and environment.
 */
export interface CommandContext {
  /** Arguments after the command name (e.g. for `dropkey app add --name x`, `['add', '--name', 'x']`). */
  argv: string[];
  env: Record<string, string | undefined>;
  cwd: string;
  stdin: Readable & { isTTY?: boolean };
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean };
  /**
   * The file descriptor behind `stdout` when it is the process's own (1), so a hot path can write a short line
   * synchronously without building the stdout stream (see writeLine). Absent in tests that pass their own streams.
   */
  stdoutFd?: number;
  /** Aborted on Ctrl-C (SIGINT) or SIGTERM. Long-running commands must stop cleanly when it fires. */
  signal: AbortSignal;
  /**
   * Hands these signals to `handler` instead of the default (SIGINT/SIGTERM abort `signal`; the others would end the
   * process) until the returned function is called. For commands that pass signals on to a child (`dropkey exec`).
   * Only the real process provides it; a command run in-process by a test falls back to `signal`.
   */
  trapSignals?(signals: readonly NodeJS.Signals[], handler: (sig: NodeJS.Signals) => void): () => void;
  /**
   * Subscribes to SIGHUP ("reload your configuration", for long-running commands such as `dropkey agent`);
   * returns the unsubscribe. Absent where there is no such signal (tests that pass their own context).
   */
  onHangup?: (listener: () => void) => () => void;
}

/**
 * A command module's default export, the one source of what the command is: the command table's summaries and the
 * top-level help come from `summary`, --help prints `usage`, and the flags are parsed (and mistyped ones matched to
 * a suggestion) from `options` and `subcommands`. Throw DropkeyError for failures; return an exit code only for
 * "ran fine but found a problem" (e.g. doctor → 1).
 */
export interface Command {
  /** One line for `dropkey --help`. */
  summary: string;
  usage: string;
  /** The flags the command takes (for a command with subcommands: the flags every subcommand takes, often none). */
  options: CommandOptions;
  /** Each subcommand's own flags, for commands such as `app add` or `keys rotate`. */
  subcommands?: Record<string, CommandOptions>;
  run(ctx: CommandContext): Promise<number | void>;
}

/**
 * Writes one short line to stdout. With a real file descriptor it writes synchronously and skips building
 * process.stdout (a measurable part of `dropkey token`'s start-up when stdout is a pipe); a full non-blocking pipe
 * (EAGAIN) falls back to the stream, which queues.
 */
export function writeLine(ctx: Pick<CommandContext, 'stdout' | 'stdoutFd'>, text: string): void {
  if (ctx.stdoutFd !== undefined) {
    try {
      writeSync(ctx.stdoutFd, text);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
  ctx.stdout.write(text);
}
