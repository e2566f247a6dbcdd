/**
 * `dropkey exec -- CMD ARGS`: runs CMD with DROPBOX_ACCESS_TOKEN set to a valid token (like `aws-vault exec`),
 * forwarding signals and returning CMD's exit code.
 *
 * An environment variable cannot change once CMD runs, and a Dropbox access token lives 4 hours, so a longer job
 * asks for `--renew`: a private token file that is rewritten before each token runs out, for as long as CMD lives,
 * optionally followed by a signal telling CMD to read it again.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command, CommandContext, CommandOptions } from '../context.js';
import { intOption, parseOptions, usageError } from '../config.js';
import { withSession, type Session } from '../session.js';
import { adviceLines } from '../fix.js';
import { writeAtomic } from '../../agent/writer.js';
import { validateName } from '../../connections/names.js';
import type { Dropkey } from '../../connections/dropkey.js';
import type { TokenInfo } from '../../connections/types.js';
import { backoffDelay } from '../../dropbox/retry.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { rfc3339 } from '../../formats/text.js';

const usage = `Usage: dropkey exec [--connection NAME] [--min-valid SECONDS] [--env NAME]...
                   [--renew [--renew-margin SECONDS] [--renew-signal SIGNAL]] -- CMD [ARGS...]

Runs CMD with DROPBOX_ACCESS_TOKEN set to a valid access token, and exits with CMD's exit code
(128 + N when CMD is killed by signal N). Signals sent to dropkey are passed on to CMD.
  dropkey exec -- python backup.py
  dropkey exec --env DPBX_ACCESS_TOKEN -- duplicity /data dpbx:///backups
  dropkey exec --renew --renew-signal HUP -- python train.py

Also set for CMD:
  DROPBOX_ACCESS_TOKEN_EXPIRES_AT  When that token expires (RFC 3339, UTC); unset when unknown.
  DROPBOX_ACCESS_TOKEN_FILE        With --renew: a private file (mode 0600) holding the current token, rewritten
                                   before each token expires for as long as CMD runs, removed when CMD exits.
                                   A job running longer than 4 hours reads the token from this file.

Options:
  --connection NAME       Connection (default: $DROPKEY_CONNECTION or "default").
  --min-valid SECONDS     The token must stay valid at least this long when CMD starts (default 300).
  --env NAME              Also set the token under this variable name (repeatable), e.g. DPBX_ACCESS_TOKEN.
  --renew                 Keep DROPBOX_ACCESS_TOKEN_FILE fresh while CMD runs.
  --renew-margin SECONDS  Renew when the token in the file has less than this left (default 1800).
  --renew-signal SIGNAL   Send CMD this signal (e.g. HUP, USR1) after each renewal.
`;

/** Signals passed on to CMD. SIGKILL and SIGSTOP cannot be caught; SIGCHLD and SIGPIPE are about dropkey itself. */
const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];
const DEFAULT_MARGIN_SECONDS = 1800;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESERVED = new Set(['DROPBOX_ACCESS_TOKEN_EXPIRES_AT', 'DROPBOX_ACCESS_TOKEN_FILE']);

const options = {
  connection: { type: 'string' },
  'min-valid': { type: 'string' },
  env: { type: 'string', multiple: true },
  renew: { type: 'boolean' },
  'renew-margin': { type: 'string' },
  'renew-signal': { type: 'string' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Run a command with DROPBOX_ACCESS_TOKEN set (--renew keeps a token file fresh for long jobs)',
  usage,
  options,
  async run(ctx) {
    const sep = ctx.argv.indexOf('--');
    const own = sep < 0 ? ctx.argv : ctx.argv.slice(0, sep);
    const cmd = sep < 0 ? [] : ctx.argv.slice(sep + 1);
    const { values } = parseOptions('exec', own, options);
    if (cmd.length === 0) throw usageError('exec', 'missing the command to run: put it after "--", e.g. dropkey exec -- env');
    const minValidSeconds = intOption('exec', 'min-valid', values['min-valid'], { max: 4 * 3600 });
    const envNames = values.env ?? [];
    for (const n of envNames) {
      if (!ENV_NAME.test(n)) throw usageError('exec', `--env "${n.slice(0, 60)}" is not a variable name (letters, digits and _, not starting with a digit)`);
      if (RESERVED.has(n)) throw usageError('exec', `--env ${n}: dropkey sets that variable itself`);
    }
    const renew = values.renew === true;
    if (!renew && (values['renew-margin'] !== undefined || values['renew-signal'] !== undefined)) {
      throw usageError('exec', '--renew-margin and --renew-signal go with --renew');
    }
    const marginSeconds = intOption('exec', 'renew-margin', values['renew-margin'], { min: 60, max: 3 * 3600 }) ?? DEFAULT_MARGIN_SECONDS;
    const renewSignal = values['renew-signal'] === undefined ? null : signalName(values['renew-signal']);

    const start = async ({ dk, cfg }: Session) => {
      const name = validateName('connection', values.connection ?? cfg.connection);
      const minValid = renew ? Math.max(minValidSeconds ?? 300, marginSeconds) : minValidSeconds;
      const token = await dk.getToken(name, { ...(minValid === undefined ? {} : { minValidSeconds: minValid }), signal: ctx.signal });
      const env: Record<string, string | undefined> = { ...ctx.env, DROPBOX_ACCESS_TOKEN: token.accessToken };
      for (const n of envNames) env[n] = token.accessToken;
      // Inherited values (from an outer dropkey exec) would describe another token.
      delete env['DROPBOX_ACCESS_TOKEN_EXPIRES_AT'];
      delete env['DROPBOX_ACCESS_TOKEN_FILE'];
      if (token.expiresAt !== null) env['DROPBOX_ACCESS_TOKEN_EXPIRES_AT'] = rfc3339(token.expiresAt);
      return { name, token, env };
    };
    // Without --renew the store is closed before CMD starts: nothing is needed from it while CMD runs.
    if (!renew) return runChild(ctx, cmd, (await withSession(ctx, start)).env, () => {});

    return withSession(ctx, async (session) => {
      const { dk } = session;
      const { name, token, env } = await start(session);
      const tokenFile = await TokenFile.create(ctx.env['XDG_RUNTIME_DIR'] || tmpdir());
      try {
        await tokenFile.write(token.accessToken);
        env['DROPBOX_ACCESS_TOKEN_FILE'] = tokenFile.path;
        const info = await dk.get(name);
        if (!info.refreshable) {
          ctx.stderr.write(`Warning: "${name}" has no refresh token: ${tokenFile.path} keeps the current token until it expires. Connect it with dropkey login to renew.\n`);
        }
        let renewer: Renewer | null = null;
        const code = await runChild(ctx, cmd, env, (child) => {
          if (!info.refreshable) return;
          renewer = new Renewer({ dk, name, marginMs: marginSeconds * 1000, file: tokenFile, ctx, onRenewed: () => {
            if (renewSignal !== null && child.exitCode === null && child.signalCode === null) child.kill(renewSignal);
          } });
          renewer.start(token);
        });
        await (renewer as Renewer | null)?.stop();
        return code;
      } finally {
        await tokenFile.remove();
      }
    });
  },
};
export default command;

function signalName(v: string): NodeJS.Signals {
  const up = v.trim().toUpperCase();
  const sig = (up.startsWith('SIG') ? up : `SIG${up}`) as NodeJS.Signals;
  if (!(sig in constants.signals) || sig === 'SIGKILL' || sig === 'SIGSTOP') {
    throw usageError('exec', `--renew-signal "${v.slice(0, 20)}" is not a signal CMD can handle (e.g. HUP, USR1, USR2)`);
  }
  return sig;
}

/** The private token file: a fresh 0700 directory holding one 0600 file, replaced atomically at each renewal. */
class TokenFile {
  private constructor(
    readonly dir: string,
    readonly path: string,
  ) {}

  static async create(base: string): Promise<TokenFile> {
    // mkdtemp creates the directory with mode 0700: no one else can list it or open what is in it.
    const dir = await mkdtemp(join(base, 'dropkey-exec-'));
    return new TokenFile(dir, join(dir, 'token'));
  }

  /**
   * Through the agent's atomic writer (temporary file, fsync, rename): a reader sees the old token or the new one.
   * The token and a newline, like the agent's `token` output (`$(cat FILE)` and `read().strip()` both drop it).
   */
  async write(token: string): Promise<void> {
    await writeAtomic(this.path, () => `${token}\n`, { mode: 0o600, force: true });
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

interface RenewerOptions {
  dk: Dropkey;
  name: string;
  marginMs: number;
  file: TokenFile;
  ctx: CommandContext;
  onRenewed: (t: TokenInfo) => void;
}

/**
 * Rewrites the token file when the token in it gets within the margin of its expiry: one timer set from the expiry
 * (no polling). The token comes from the facade, so the store's lock keeps this process, agents and `serve` from
 * refreshing the same connection twice. Failures are retried with back-off while the current token still works;
 * a connection that needs a new login is reported once and the file keeps its last token.
 */
class Renewer {
  private timer: NodeJS.Timeout | null = null;
  private inflight: Promise<void> | null = null;
  private current: TokenInfo | null = null;
  private failures = 0;
  private stopped = false;
  private shortWarned = false;

  constructor(private readonly o: RenewerOptions) {}

  start(t: TokenInfo): void {
    this.current = t;
    this.schedule(this.dueIn(t));
  }

  /**
   * No renewal after this; one in flight is waited for rather than cancelled, because a refresh goes on in the
   * facade after its caller stops waiting, and the store must not be closed under it.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.inflight;
  }

  private dueIn(t: TokenInfo): number | null {
    return t.expiresAt === null ? null : t.expiresAt - this.o.marginMs - Date.now();
  }

  private schedule(ms: number | null): void {
    if (this.stopped || ms === null) return;
    // Node timers hold at most 2^31-1 ms (24.8 days); a longer wait is re-armed when that one fires.
    this.timer = setTimeout(() => {
      this.timer = null;
      this.inflight = this.renew().finally(() => (this.inflight = null));
    }, Math.min(Math.max(0, ms), 2 ** 31 - 1));
  }

  private async renew(): Promise<void> {
    const { dk, name, marginMs, file, ctx } = this.o;
    try {
      const t = await dk.getToken(name, { minValidSeconds: Math.ceil(marginMs / 1000) + 60 });
      if (this.stopped) return;
      if (t.accessToken !== this.current?.accessToken) {
        await file.write(t.accessToken);
        this.current = t;
        this.failures = 0;
        this.o.onRenewed(t);
      }
      const due = this.dueIn(t);
      if (due !== null && due <= 0) {
        // Dropbox handed out a token with less than the margin to live: use it, look again after half its life.
        if (!this.shortWarned) ctx.stderr.write(`dropkey exec: the token of "${name}" lives less than the renewal margin; renewing more often.\n`);
        this.shortWarned = true;
        this.schedule(Math.max(1000, (t.expiresAt! - Date.now()) / 2));
        return;
      }
      this.schedule(due);
    } catch (err) {
      if (this.stopped) return;
      const e = err as DropkeyError;
      if (e.code === ErrorCodes.REAUTH_REQUIRED || e.code === ErrorCodes.TOKEN_EXPIRED || e.code === ErrorCodes.INVALID_CLIENT || e.code === ErrorCodes.NOT_FOUND) {
        ctx.stderr.write(`dropkey exec: cannot renew the token of "${name}": ${e.message}${adviceLines(e).map((l) => `\n  ${l}`).join('')}\n  ${file.path} keeps the last token until it expires.\n`);
        return;
      }
      this.failures++;
      // 30 s, 1 min, 2 min... up to 10 min, jittered like every other retry in dropkey (so many jobs do not retry
      // in step), and never past expiry.
      const backoff = backoffDelay(this.failures - 1, { baseDelayMs: 30_000, maxDelayMs: 600_000, random: Math.random });
      const left = this.current?.expiresAt == null ? backoff : this.current.expiresAt - Date.now();
      if (this.failures === 1 || this.failures % 10 === 0) {
        ctx.stderr.write(`dropkey exec: renewing the token of "${name}" failed (${e.message}); retrying${left > 0 ? '' : ' (the token in the file has expired)'}.\n`);
      }
      this.schedule(left > 0 ? Math.min(backoff, Math.max(1000, left / 2)) : backoff);
    }
  }
}

/** A stream's file descriptor when it is a real one (process.stdout...), so the child shares the terminal. */
function fdOf(s: unknown): number | 'pipe' {
  const fd = (s as { fd?: unknown }).fd;
  return typeof fd === 'number' ? fd : 'pipe';
}

function runChild(ctx: CommandContext, argv: string[], env: Record<string, string | undefined>, onStart: (child: ChildProcess) => void): Promise<number> {
  const stdio: StdioOptions = [fdOf(ctx.stdin), fdOf(ctx.stdout), fdOf(ctx.stderr)];
  return new Promise<number>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio, env: env as NodeJS.ProcessEnv, cwd: ctx.cwd });
    if (stdio[0] === 'pipe') ctx.stdin.pipe(child.stdin!);
    if (stdio[1] === 'pipe') child.stdout!.pipe(ctx.stdout, { end: false });
    if (stdio[2] === 'pipe') child.stderr!.pipe(ctx.stderr, { end: false });
    const forward = (sig: NodeJS.Signals): void => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    };
    // In the real process every forwarded signal reaches CMD once, however often it comes (a terminal's Ctrl-C also
    // reaches CMD through its process group, which is harmless: it sees SIGINT either way). In-process (tests),
    // main's abort on SIGINT/SIGTERM is passed on instead.
    const release = ctx.trapSignals?.(FORWARDED, forward);
    const onAbort = (): void => {
      const reason = String((ctx.signal.reason as Error | undefined)?.message ?? '');
      forward((/SIG[A-Z]+/.exec(reason)?.[0] ?? 'SIGTERM') as NodeJS.Signals);
    };
    if (!release) ctx.signal.addEventListener('abort', onAbort);
    const done = (): void => {
      release?.();
      ctx.signal.removeEventListener('abort', onAbort);
    };
    child.once('spawn', () => onStart(child));
    child.once('error', (e: NodeJS.ErrnoException) => {
      done();
      if (e.code === 'ENOENT') {
        // The shell's convention for "command not found" is exit status 127.
        ctx.stderr.write(`dropkey: command not found: ${argv[0]}\n  Check the command after "--" (is it installed and on PATH?).\n`);
        resolve(127);
      } else reject(new DropkeyError(ErrorCodes.BAD_INPUT, `could not run ${argv[0]}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      done();
      // Shell convention: killed by signal N → 128 + N.
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 15) : 15));
    });
  });
}
