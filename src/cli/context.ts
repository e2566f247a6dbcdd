import type { Readable, Writable } from 'node:stream';

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
  /** Aborted on Ctrl-C (SIGINT) or SIGTERM. Long-running commands must stop cleanly when it fires. */
  signal: AbortSignal;
}

/** A command module's default export. Throw DropkeyError for failures; return an exit code only for "ran fine but found a problem" (e.g. doctor → 1). */
export interface Command {
  summary: string;
  usage: string;
  run(ctx: CommandContext): Promise<number | void>;
}
