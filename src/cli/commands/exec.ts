/**
 * `dropkey exec -- CMD ARGS`: runs CMD with DROPBOX_ACCESS_TOKEN set to a valid token (like `aws-vault exec`),
 * forwarding termination signals and returning CMD's exit code.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { constants } from 'node:os';
import type { Command, CommandContext, CommandOptions } from '../context.js';
import { intOption, parseOptions, usageError } from '../config.js';
import { withSession } from '../session.js';
import { validateName } from '../../connections/names.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';

const usage = `Usage: dropkey exec [--connection NAME] [--min-valid SECONDS] -- CMD [ARGS...]

Runs CMD with DROPBOX_ACCESS_TOKEN set to a valid access token, and exits with CMD's exit code.
  dropkey exec -- python backup.py
  dropkey exec --connection dropbox_default -- sh -c 'curl -H "Authorization: Bearer $DROPBOX_ACCESS_TOKEN" ...'

Options:
  --connection NAME    Connection (default: $DROPKEY_CONNECTION or "default").
  --min-valid SECONDS  The token must stay valid at least this long when CMD starts (default 300).
`;

const options = { connection: { type: 'string' }, 'min-valid': { type: 'string' } } as const satisfies CommandOptions;

const command: Command = {
  summary: 'Run a command with DROPBOX_ACCESS_TOKEN set to a valid token',
  usage,
  options,
  async run(ctx) {
    const sep = ctx.argv.indexOf('--');
    const own = sep < 0 ? ctx.argv : ctx.argv.slice(0, sep);
    const cmd = sep < 0 ? [] : ctx.argv.slice(sep + 1);
    const { values } = parseOptions('exec', own, options);
    if (cmd.length === 0) throw usageError('exec', 'missing the command to run: put it after "--", e.g. dropkey exec -- env');
    const minValidSeconds = intOption('exec', 'min-valid', values['min-valid'], { max: 4 * 3600 });
    const token = await withSession(ctx, async ({ dk, cfg }) => {
      const name = validateName('connection', values.connection ?? cfg.connection);
      return dk.getAccessToken(name, { ...(minValidSeconds === undefined ? {} : { minValidSeconds }), signal: ctx.signal });
    });
    return runChild(ctx, cmd, { ...ctx.env, DROPBOX_ACCESS_TOKEN: token });
  },
};
export default command;

/** A stream's file descriptor when it is a real one (process.stdout...), so the child shares the terminal. */
function fdOf(s: unknown): number | 'pipe' {
  const fd = (s as { fd?: unknown }).fd;
  return typeof fd === 'number' ? fd : 'pipe';
}

function runChild(ctx: CommandContext, argv: string[], env: Record<string, string | undefined>): Promise<number> {
  const stdio: StdioOptions = [fdOf(ctx.stdin), fdOf(ctx.stdout), fdOf(ctx.stderr)];
  return new Promise<number>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio, env: env as NodeJS.ProcessEnv, cwd: ctx.cwd });
    if (stdio[0] === 'pipe') ctx.stdin.pipe(child.stdin!);
    if (stdio[1] === 'pipe') child.stdout!.pipe(ctx.stdout, { end: false });
    if (stdio[2] === 'pipe') child.stderr!.pipe(ctx.stderr, { end: false });
    // main.ts aborts ctx.signal on SIGINT/SIGTERM; pass the same signal on (a terminal's Ctrl-C also reaches the
    // child directly through its process group, which is harmless: the child sees SIGINT either way).
    const onAbort = (): void => {
      const reason = String((ctx.signal.reason as Error | undefined)?.message ?? '');
      const sig = (/SIG[A-Z]+/.exec(reason)?.[0] ?? 'SIGTERM') as NodeJS.Signals;
      child.kill(sig);
    };
    ctx.signal.addEventListener('abort', onAbort);
    child.once('error', (e: NodeJS.ErrnoException) => {
      ctx.signal.removeEventListener('abort', onAbort);
      if (e.code === 'ENOENT') {
        // The shell's convention for "command not found" is exit status 127.
        ctx.stderr.write(`dropkey: command not found: ${argv[0]}\n  Check the command after "--" (is it installed and on PATH?).\n`);
        resolve(127);
      } else reject(new DropkeyError(ErrorCodes.BAD_INPUT, `could not run ${argv[0]}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      ctx.signal.removeEventListener('abort', onAbort);
      // Shell convention: killed by signal N → 128 + N.
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 15) : 15));
    });
  });
}
