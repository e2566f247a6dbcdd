/**
 * Running the BUILT CLI (the package's bin, `node dist/cli/dropkey.cjs`, so `npm run build` first) as a child process against an
 * in-process emulator on 127.0.0.1:0, with its own throw-away DROPKEY_HOME.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmulator, type StartedEmulator, type TokenResponse } from '../helpers/emulator.js';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/**
 * DROPKEY_CLI_MAIN points the tests at another build of the CLI; default: what users run, the package's bin
 * (dist/cli/dropkey.cjs), so `dropkey token`'s own bundle is what these tests exercise.
 */
export const MAIN = process.env['DROPKEY_CLI_MAIN'] ? resolve(process.env['DROPKEY_CLI_MAIN']) : join(ROOT, 'dist/cli/dropkey.cjs');
/** A preload that shifts the child's Date.now by FAKE_CLOCK_OFFSET_MS: time passes for dropkey as for the emulator. */
const FAKE_CLOCK = join(ROOT, 'test/cli/fake-clock.mjs');

if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" before the CLI end-to-end tests`);

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  stdin?: string;
  env?: Record<string, string | undefined>;
  /** Milliseconds to add to the child's clock (see fake-clock.mjs). */
  clockOffsetMs?: number;
  /**
   * The child follows every later advanceClock while it runs (a long-running command: `exec --renew`), and its
   * timers due in the moved clock fire at once (see fake-clock.mjs).
   */
  liveClock?: boolean;
}

export class CliEnv {
  readonly home: string;
  readonly emu: StartedEmulator;
  /** Total seconds the emulator's clock was moved; the CLI's clock follows it. */
  clockSeconds = 0;

  private constructor(home: string, emu: StartedEmulator) {
    this.home = home;
    this.emu = emu;
  }

  static async create(emu?: StartedEmulator): Promise<CliEnv> {
    const home = await mkdtemp(join(tmpdir(), 'dropkey-cli-test-'));
    return new CliEnv(home, emu ?? (await startEmulator()));
  }

  /** The environment a user would set: a data directory and the emulator as Dropbox. Nothing inherited but PATH. */
  env(extra: Record<string, string | undefined> = {}): Record<string, string> {
    const env: Record<string, string | undefined> = {
      PATH: process.env['PATH'],
      DROPKEY_HOME: this.home,
      DROPKEY_DROPBOX_URL: this.emu.url,
      ...extra,
    };
    if (this.clockSeconds !== 0) {
      env['FAKE_CLOCK_OFFSET_MS'] = String(this.clockSeconds * 1000);
    }
    return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  }

  /** Moves the emulator's clock, and the clock of every CLI run from now on (and of running liveClock ones). */
  async advanceClock(seconds: number): Promise<void> {
    await this.emu.control.advanceClock(seconds);
    this.clockSeconds += seconds;
    const file = this.clockFile();
    writeFileSync(`${file}.tmp`, String(this.clockSeconds * 1000));
    renameSync(`${file}.tmp`, file);
  }

  /** The offset file liveClock children watch, in its own directory (the children watch the directory). */
  private clockFile(): string {
    const dir = join(this.home, 'fake-clock');
    const file = join(dir, 'offset-ms');
    if (!existsSync(file)) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(file, String(this.clockSeconds * 1000));
    }
    return file;
  }

  spawn(args: string[], o: RunOptions = {}): ChildProcessWithoutNullStreams {
    const env = this.env(o.env);
    if (o.liveClock) {
      env['FAKE_CLOCK_FILE'] = this.clockFile();
      delete env['FAKE_CLOCK_OFFSET_MS'];
    }
    const pre = env['FAKE_CLOCK_OFFSET_MS'] || env['FAKE_CLOCK_FILE'] ? ['--import', FAKE_CLOCK] : [];
    return spawn(process.execPath, [...pre, MAIN, ...args], { env, cwd: this.home, stdio: 'pipe' });
  }

  run(args: string[], o: RunOptions = {}): Promise<CliResult> {
    const child = this.spawn(args, o);
    if (o.stdin !== undefined) child.stdin.end(o.stdin);
    else child.stdin.end();
    return collect(child);
  }

  async close(): Promise<void> {
    await this.emu.close();
    await rm(this.home, { recursive: true, force: true });
  }

  // ------------------------------------------------------------ set-up through the CLI and the control API

  /** An emulator app (any loopback redirect) registered in dropkey under `name`. */
  async addApp(name: string, spec: { scopes?: string[]; team?: boolean; access?: 'full' | 'app_folder' } = {}) {
    const app = await this.emu.control.createApp({
      redirect_uris: ['http://127.0.0.1/*'],
      ...(spec.scopes ? { scopes: spec.scopes } : {}),
      ...(spec.team ? { team: true } : {}),
      ...(spec.access ? { access: spec.access } : {}),
    });
    const args = ['app', 'add', '--name', name, '--key', app.key, '--secret', '-'];
    if (spec.team) args.push('--team');
    if (spec.access === 'app_folder') args.push('--app-folder');
    const r = await this.run(args, { stdin: `${app.secret}\n` });
    if (r.code !== 0) throw new Error(`app add failed: ${r.stderr}`);
    return app;
  }

  /** A fresh account with an offline grant for the app (tokens without a browser). */
  async grant(appKey: string, o: { scopes?: string[]; team?: boolean; offline?: boolean } = {}): Promise<{ token: TokenResponse; accountId: string; email: string }> {
    const email = `${Math.random().toString(36).slice(2, 10)}@example.com`;
    const account = await this.emu.control.createAccount({ email, ...(o.team ? { team: { name: `Team ${email}` }, team_admin: true } : {}) });
    const token = await this.emu.control.grant({
      app: appKey,
      account: account.account_id,
      token_access_type: o.offline === false ? 'online' : 'offline',
      ...(o.scopes ? { scopes: o.scopes } : {}),
    });
    return { token, accountId: account.account_id, email };
  }

  /** app + account + `dropkey import --refresh-token -` under `connection`. */
  async connect(connection: string, appName = `app-${connection}`, spec: { scopes?: string[]; team?: boolean; access?: 'full' | 'app_folder' } = {}) {
    const app = await this.addApp(appName, spec);
    const g = await this.grant(app.key, { ...(spec.team ? { team: true } : {}) });
    const r = await this.run(['import', '--connection', connection, '--app', appName, '--refresh-token', '-'], { stdin: `${g.token.refresh_token}\n` });
    if (r.code !== 0) throw new Error(`import failed (${r.code}): ${r.stderr}`);
    return { app, ...g };
  }
}

export function collect(child: ChildProcessWithoutNullStreams): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((res, rej) => {
    child.once('error', rej);
    child.once('close', (code, signal) => res({ code, signal, stdout, stderr }));
  });
}

/** Resolves with the first match of `re` in the stream's text so far (event-driven, no polling). */
export function waitForOutput(stream: NodeJS.ReadableStream, re: RegExp): Promise<RegExpExecArray> {
  let text = '';
  return new Promise((res, rej) => {
    const onData = (d: Buffer | string): void => {
      text += d.toString();
      const m = re.exec(text);
      if (m) {
        stream.off('data', onData);
        stream.off('end', onEnd);
        res(m);
      }
    };
    const onEnd = (): void => rej(new Error(`stream ended without matching ${re}; got:\n${text}`));
    stream.on('data', onData);
    stream.on('end', onEnd);
  });
}

/** Fails if any of the secrets appears in the text. */
export function assertNoSecrets(text: string, secrets: Array<string | undefined | null>, where = 'output'): void {
  for (const s of secrets) {
    if (s && s.length >= 6 && text.includes(s)) throw new Error(`a secret (${s.slice(0, 4)}…) appeared in ${where}:\n${text}`);
  }
}

export function authorizeUrlFrom(text: string): string {
  const m = /(http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?\S+)/.exec(text);
  if (!m) throw new Error(`no authorize URL in:\n${text}`);
  return m[1]!;
}
