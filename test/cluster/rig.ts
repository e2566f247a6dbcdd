/**
 * Shared rig of the issue-5 cluster tests: one PostgreSQL schema (fresh per test, dropped afterwards), one emulator
 * on 127.0.0.1:0, and any number of real `dropkey serve` processes (the built binary, `npm run build` first) on that
 * schema with one master key. The tests talk to the instances over HTTP only, as a load balancer would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Agent, request } from 'node:http';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/types.js';
import { dropSchema, freshSchemaName, TEST_DATABASE_URL, withAdmin } from '../../src/store/postgres/test-helpers.test-support.js';
import { startEmulator, type StartedEmulator } from '../helpers/emulator.js';

export { TEST_DATABASE_URL };
export const MAIN_JS = resolve('dist/cli/main.js');

/** Why a cluster test cannot run here, or undefined when it can. */
export function skipReason(): string | undefined {
  if (!TEST_DATABASE_URL) return 'cluster tests skipped: DROPKEY_TEST_DATABASE_URL is not set (.ci/run sets it when a PostgreSQL server is running)';
  if (!existsSync(MAIN_JS)) return 'cluster tests skipped: dist/cli/main.js is missing (run npm run build first)';
  return undefined;
}

export interface Instance {
  url: string;
  proc: ChildProcess;
  /** Resolves with the exit code or signal once the process is gone. */
  exited: Promise<number | string>;
  stderr: string[];
  /** stdout lines (the listening address, the setup URL). */
  stdout: string[];
  /** Resolves with the first stdout line (already seen or coming) that matches. */
  line(re: RegExp): Promise<string>;
  stop(): Promise<void>;
}

export interface Cluster {
  emu: StartedEmulator;
  schema: string;
  databaseUrl: string;
  masterKey: string;
  env: Record<string, string>;
  /** An in-process store on the same schema (seeding and inspection). */
  store: Store;
  app: { name: string; key: string; secret: string };
  instances: Instance[];
  startInstance(extraEnv?: Record<string, string>): Promise<Instance>;
  /** A connection imported from an emulator offline grant, its access token already expired for dropkey and Dropbox. */
  connection(name: string): Promise<{ refreshToken: string }>;
  /** Runs the CLI binary to completion. */
  cli(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  apiKey(): Promise<string>;
  tokenRequests(): Promise<number>;
  close(): Promise<void>;
}

export function withSchema(url: string, schema: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`;
}

/** `baseUrl`: another PostgreSQL server than DROPKEY_TEST_DATABASE_URL (a private one the test may restart). */
export async function startCluster(o: { emulator?: Record<string, unknown>; baseUrl?: string } = {}): Promise<Cluster> {
  const emu = await startEmulator(o.emulator ?? {});
  const schema = freshSchemaName();
  const databaseUrl = withSchema(o.baseUrl ?? TEST_DATABASE_URL!, schema);
  const masterKey = randomBytes(32).toString('base64');
  const homes: string[] = [];
  const newHome = () => {
    const h = mkdtempSync(join(tmpdir(), 'dropkey-cluster-'));
    homes.push(h);
    return h;
  };
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    DROPKEY_MASTER_KEY: masterKey,
    DROPKEY_DATABASE_URL: databaseUrl,
    DROPKEY_DROPBOX_URL: emu.url,
    DROPKEY_LOG_LEVEL: 'warn',
    // Background jobs would refresh the tests' expired connections behind their back.
    DROPKEY_JOBS: 'off',
  };
  const store = await openStore({ home: newHome(), masterKey, databaseUrl });
  const appSpec = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  const app = { name: 'app', key: appSpec.key, secret: appSpec.secret! };
  await store.createApp({ name: app.name, key: app.key, secret: app.secret, scopes: appSpec.scopes, team: false, access: 'full' });
  const account = await emu.control.createAccount();
  // Tokens the emulator issued before the clock moved: expired at "Dropbox" once the test advances the clock.
  const instances: Instance[] = [];
  const spawned: { proc: ChildProcess; exited: Promise<number | string> }[] = [];

  const cluster: Cluster = {
    emu,
    schema,
    databaseUrl,
    masterKey,
    env,
    store,
    app,
    instances,
    async startInstance(extraEnv = {}) {
      const home = newHome();
      const proc = spawn(process.execPath, [MAIN_JS, 'serve', '--port', '0'], {
        env: { ...env, DROPKEY_HOME: home, ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise<number | string>((r) => proc.once('exit', (code, signal) => r(code ?? signal ?? -1)));
      // Tracked from the spawn on: one that never gets to "listening" must not outlive a failed test either.
      spawned.push({ proc, exited });
      const stderr: string[] = [];
      proc.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
      const stdout: string[] = [];
      const lines = createInterface({ input: proc.stdout! });
      const url = await new Promise<string>((resolveUrl, reject) => {
        lines.on('line', (line) => {
          stdout.push(line);
          const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
          if (m) resolveUrl(m[1]!);
        });
        void exited.then((c) => reject(new Error(`dropkey serve exited (${c}) before listening: ${stderr.join('').slice(-2000)}`)));
      });
      const inst: Instance = {
        url,
        proc,
        exited,
        stderr,
        stdout,
        line(re) {
          const seen = stdout.find((l) => re.test(l));
          if (seen !== undefined) return Promise.resolve(seen);
          return new Promise((resolveLine, reject) => {
            lines.on('line', (l) => re.test(l) && resolveLine(l));
            void exited.then((code) => reject(new Error(`dropkey serve exited (${code}) before printing ${re}`)));
          });
        },
        async stop() {
          await stopChild(proc, exited);
        },
      };
      instances.push(inst);
      return inst;
    },
    async connection(name) {
      const grant = await emu.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' });
      const now = Date.now();
      await store.createConnection({
        name,
        app: app.name,
        accountId: account.account_id,
        teamId: null,
        email: account.email ?? null,
        displayName: null,
        teamName: null,
        scopes: (grant.scope ?? '').split(' ').filter(Boolean),
        accessToken: grant.access_token,
        // Expired for dropkey: every caller must refresh first.
        accessTokenExpiresAt: now - 60_000,
        refreshToken: grant.refresh_token!,
        state: 'active',
        lastError: null,
        lastRefreshAt: null,
      });
      return { refreshToken: grant.refresh_token! };
    },
    cli(args, input) {
      return new Promise((resolveRun) => {
        const proc = spawn(process.execPath, [MAIN_JS, ...args], { env: { ...env, DROPKEY_HOME: newHome() }, stdio: ['pipe', 'pipe', 'pipe'] });
        spawned.push({ proc, exited: new Promise((r) => proc.once('exit', (code, signal) => r(code ?? signal ?? -1))) });
        let stdout = '';
        let stderr = '';
        proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        proc.on('exit', (code) => resolveRun({ code: code ?? -1, stdout, stderr }));
        proc.stdin.end(input ?? '');
      });
    },
    async apiKey() {
      const r = await cluster.cli(['apikey', 'create', '--name', `k${randomBytes(3).toString('hex')}`, '--permission', 'token:read', '--permission', 'admin', '--all-connections']);
      if (r.code !== 0) throw new Error(`apikey create failed: ${r.stderr}`);
      return r.stdout.trim();
    },
    async tokenRequests() {
      return (await emu.control.requests()).filter((r) => r['route'] === 'oauth2/token' || r.path === '/oauth2/token').length;
    },
    async close() {
      // Every child this cluster spawned (instances, CLI runs, instances that never listened) is gone after close.
      await Promise.allSettled(spawned.map((c) => stopChild(c.proc, c.exited)));
      await store.close();
      await emu.close();
      if (!o.baseUrl) await dropSchema(schema);
      for (const h of homes) rmSync(h, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** How long a child gets to shut down after SIGTERM before it is killed (a graceful stop waits for open requests). */
const STOP_GRACE_MS = 10_000;

/** SIGTERM, then SIGKILL if the child is still there after STOP_GRACE_MS: a stuck shutdown never hangs a test run. */
async function stopChild(proc: ChildProcess, exited: Promise<number | string>): Promise<number | string> {
  if (proc.exitCode !== null || proc.signalCode !== null) return exited;
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Keep-alive HTTP GET returning status and parsed JSON (undici's pool would open more sockets than we ask for). */
export function httpGetJson(url: string, headers: Record<string, string>, agent: Agent): Promise<{ status: number; body: any }> {
  return new Promise((resolveGet, reject) => {
    const req = request(url, { method: 'GET', headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
        resolveGet({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Runs `tasks` with at most `limit` in flight; results in task order. */
export async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) {
        const i = next++;
        out[i] = await tasks[i]!();
      }
    }),
  );
  return out;
}

/** Rows of the schema's lock table (lease locks of the PostgreSQL store). */
export async function lockRows(schema: string): Promise<{ name: string; owner: string }[]> {
  return withAdmin(async (c) => (await c.query<{ name: string; owner: string }>(`SELECT name, owner FROM "${schema}".locks`)).rows);
}
