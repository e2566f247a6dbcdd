/**
 * Runs the built CLI with its stderr on a pseudo-terminal (and stdin, stdout as pipes), to see what a person at a
 * terminal sees: progress is shown only there. Node cannot open a pty, so a few lines of Python (pty.openpty) do:
 * the child's stderr is the pty, and what the terminal shows comes back on the wrapper's stderr.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { MAIN, type CliEnv } from './cli-helpers.js';

const WRAPPER = `
import os, subprocess, sys
master, slave = os.openpty()
p = subprocess.Popen(sys.argv[1:], stderr=slave)
os.close(slave)
while True:
    try:
        data = os.read(master, 4096)
    except OSError:
        break
    if not data:
        break
    os.write(2, data)
sys.exit(p.wait())
`;

/** Why a terminal cannot be had here, or undefined when it can (python3 with the pty module). */
export const NO_TTY: string | undefined = (() => {
  const r = spawnSync('python3', ['-c', 'import os, pty; os.close(os.openpty()[0])'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : 'python3 with a working pty module is needed to give the CLI a terminal';
})();

/** Spawns `dropkey ARGS` like CliEnv.spawn, but with stderr on a terminal. */
export function spawnOnTerminal(t: CliEnv, args: string[]): ChildProcessWithoutNullStreams {
  return spawn('python3', ['-c', WRAPPER, process.execPath, MAIN, ...args], { env: t.env(), cwd: t.home, stdio: 'pipe' });
}
