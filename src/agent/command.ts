/**
 * The command run after an output is written (Vault Agent's template `command`): reload a service, signal a
 * process, copy the file into a container. It gets the output's path and expiry in its environment, never the token
 * itself (it reads the file like any other consumer).
 */
import { spawn } from 'node:child_process';

export interface CommandResult {
  /** Exit status, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The last few hundred characters of stdout and stderr, for the log. */
  output: string;
}

export type RunCommand = (argv: readonly string[], o: { env: Record<string, string | undefined>; timeoutMs: number; cwd: string }) => Promise<CommandResult>;

const KEEP = 800;

export const runCommand: RunCommand = (argv, o) =>
  new Promise((resolve) => {
    let output = '';
    const keep = (d: Buffer): void => {
      output = (output + d.toString('utf8')).slice(-KEEP);
    };
    let timedOut = false;
    const child = spawn(argv[0]!, argv.slice(1), { env: o.env as NodeJS.ProcessEnv, cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      // A command that ignores SIGTERM is not allowed to hold the agent up.
      setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
    }, o.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: 127, signal: null, timedOut: false, output: `could not start ${argv[0]}: ${err.message}` });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, output: output.trim() });
    });
  });
