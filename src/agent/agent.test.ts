/**
 * The agent engine against the emulator, in one process with one virtual clock: the emulator, the facade and the
 * agent all read ManualTimers' clock, and the agent's timers are ManualTimers', so a simulated day passes in
 * seconds. Files are real files in a temporary directory.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import ini from 'ini';
import { parse as parseYaml } from 'yaml';
import { Dropkey } from '../connections/dropkey.js';
import { dropboxUrlsFromBase } from '../dropbox/hosts.js';
import { ManualTimers } from '../server/jobs/timers.js';
import { parseDotenv } from '../formats/dotenv.js';
import { startEmulator, type StartedEmulator } from '../../test/helpers/emulator.js';
import { adviceLines } from '../cli/fix.js';
import { Agent } from './agent.js';
import { normalizeConfig, type AgentConfig } from './config.js';
import type { AgentLogger } from './log.js';
import { StoreSource } from './sources.js';

const HOUR = 3600_000;
const MARGIN_S = 1800;

interface Logged {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  obj: Record<string, unknown>;
}

interface Rig {
  timers: ManualTimers;
  emu: StartedEmulator;
  dk: Dropkey;
  dir: string;
  logs: Logged[];
  logger: AgentLogger;
  connect(name: string): Promise<{ appName: string; appKey: string; appSecret: string; refreshToken: string; accountId: string; grant(): Promise<string> }>;
  config(raw: Record<string, unknown>): AgentConfig;
  tokenCalls(): Promise<number>;
  accepted(token: string): Promise<boolean>;
  close(): Promise<void>;
}

async function makeRig(): Promise<Rig> {
  const timers = new ManualTimers(Date.now());
  const emu = await startEmulator({ clock: timers.clock }, { listen: false });
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-agent-'));
  const home = join(dir, 'home');
  const dk = await Dropkey.open({
    home,
    masterKey: randomBytes(32).toString('base64'),
    urls: dropboxUrlsFromBase(emu.url),
    fetch: emu.fetch as typeof fetch,
    now: timers.clock,
    sleep: async () => {},
    retry: { attemptTimeoutMs: 5_000 },
    lockWaitMs: 10_000,
  });
  const logs: Logged[] = [];
  const log =
    (level: Logged['level']) =>
    (obj: Record<string, unknown>, msg: string): void =>
      void logs.push({ level, msg, obj });
  let seq = 0;
  return {
    timers,
    emu,
    dk,
    dir,
    logs,
    logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
    async connect(name) {
      seq++;
      const app = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1:53682/callback'] });
      const account = await emu.control.createAccount();
      const appName = `app${seq}`;
      await dk.addApp({ name: appName, key: app.key, secret: app.secret!, scopes: app.scopes });
      const grant = async (): Promise<string> => (await emu.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' })).refresh_token!;
      const refreshToken = await grant();
      await dk.import({ connection: name, app: appName, refreshToken });
      return { appName, appKey: app.key, appSecret: app.secret!, refreshToken, accountId: account.account_id, grant };
    },
    config(raw) {
      return normalizeConfig(raw, { baseDir: dir, home: undefined, defaultConnection: 'default' }, null);
    },
    async tokenCalls() {
      return (await emu.control.requests()).filter((r) => r.path.split('?')[0] === '/oauth2/token').length;
    },
    async accepted(token) {
      return (await emu.rpc('users/get_current_account', undefined, token)).status === 200;
    },
    async close() {
      await dk.close();
      await emu.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Moves the virtual clock to `until`, stopping at every timer the agent armed, and lets the agent finish each. */
async function runUntil(rig: Rig, agent: Agent, until: number, stepMs: number, onStep?: () => Promise<void>): Promise<void> {
  while (rig.timers.now() < until) {
    const next = Math.min(until, rig.timers.now() + stepMs, rig.timers.nextAt ?? Infinity);
    rig.timers.advance(Math.max(0, next - rig.timers.now()));
    await agent.idle();
    await onStep?.();
  }
}

let rig: Rig;
before(async () => {
  rig = await makeRig();
});
after(() => rig.close());

test('24 simulated hours (six token lifetimes): every output always holds an accepted token with at least the margin left, and parses', async () => {
  await rig.connect('backup');
  const d = join(rig.dir, 'day');
  mkdirSync(d);
  // Files that already hold other people's settings: they must survive every rewrite.
  const rcloneOther = '[s3]\ntype = s3\nprovider = AWS\n\n';
  writeFileSync(join(d, 'rclone.conf'), `# mine\n${rcloneOther}[dropbox]\ntype = dropbox\ntoken = {"access_token":"old","expiry":"2020-01-01T00:00:00Z"}\n`);
  const others = {
    postgres_default: { conn_type: 'postgres', host: 'db', login: 'u', password: 'p', port: 5432 },
    http_default: { conn_type: 'http', host: 'example.com' },
    aws_default: { conn_type: 'aws', extra: { region_name: 'eu-west-1' } },
  };
  writeFileSync(join(d, 'connections.json'), `${JSON.stringify(others, null, 2)}\n`);
  writeFileSync(join(d, 'connections.yaml'), 'postgres_default:\n  conn_type: postgres\n  host: db\n');
  writeFileSync(join(d, 'backup.env'), '# duplicity\nBACKUP_URL=dpbx:///nightly\n', { mode: 0o640 });

  const config = rig.config({
    connection: 'backup',
    margin: MARGIN_S,
    outputs: [
      { format: 'token', path: 'day/token' },
      { format: 'json', path: 'day/token.json' },
      { format: 'env', path: 'day/backup.env', variables: ['DPBX_ACCESS_TOKEN', 'DROPBOX_ACCESS_TOKEN'] },
      { format: 'rclone', path: 'day/rclone.conf', remote: 'dropbox' },
      { format: 'airflow', path: 'day/connections.json', conn_id: 'dropbox_default', field: 'login' },
      { format: 'airflow', path: 'day/connections.yaml', conn_id: 'dropbox_default' },
    ],
  });
  const agent = new Agent(config, { source: new StoreSource(rig.dk, 'test'), timers: rig.timers, logger: rig.logger, random: () => 0.5 });
  await rig.emu.control.clearRequests();

  /** Reads every output, parses it in its format, and returns the token and expiry each holds. */
  const readAll = async (): Promise<Array<{ path: string; token: string; expiresAt: number | null }>> => {
    const txt = (p: string): Promise<string> => readFile(join(d, p), 'utf8');
    const json = JSON.parse(await txt('token.json'));
    const env = parseDotenv(await txt('backup.env'));
    const rc = ini.parse(await txt('rclone.conf'));
    const rcToken = JSON.parse(rc['dropbox'].token);
    const af = JSON.parse(await txt('connections.json'));
    const ay = parseYaml(await txt('connections.yaml'));
    for (const [k, v] of Object.entries(others)) assert.deepEqual(af[k], v, `Airflow connection ${k} is unchanged`);
    assert.equal(ay.postgres_default.host, 'db');
    assert.equal(rc['s3'].provider, 'AWS');
    assert.equal(rcToken.refresh_token, undefined, 'no refresh token in rclone.conf');
    assert.equal(rc['dropbox'].client_secret, undefined, 'no app secret in rclone.conf');
    const exp = (s: string | null | undefined): number | null => (s ? Date.parse(s) : null);
    return [
      { path: 'token', token: (await txt('token')).trim(), expiresAt: exp(json.expires_at) },
      { path: 'token.json', token: json.access_token, expiresAt: exp(json.expires_at) },
      { path: 'backup.env DPBX', token: env['DPBX_ACCESS_TOKEN']!, expiresAt: exp(env['DROPBOX_ACCESS_TOKEN_EXPIRES_AT']) },
      { path: 'backup.env DROPBOX', token: env['DROPBOX_ACCESS_TOKEN']!, expiresAt: exp(env['DROPBOX_ACCESS_TOKEN_EXPIRES_AT']) },
      { path: 'rclone.conf', token: rcToken.access_token, expiresAt: exp(rcToken.expiry) },
      { path: 'connections.json', token: af.dropbox_default.login, expiresAt: exp(af.dropbox_default.extra_dejson?.expires_at) },
      { path: 'connections.yaml', token: ay.dropbox_default.password, expiresAt: exp(ay.dropbox_default.extra_dejson?.expires_at) },
    ];
  };

  const start = rig.timers.now();
  const tokens = new Set<string>();
  let checks = 0;
  const check = async (): Promise<void> => {
    const now = rig.timers.now();
    const all = await readAll();
    const token = all[0]!.token;
    for (const o of all) {
      assert.equal(o.token, token, `${o.path} holds the same token as the token file`);
      assert.ok(o.expiresAt !== null, `${o.path} says when the token expires`);
      // Each output's own expiry (rclone's, the env file's, the Airflow extras'), not only the JSON file's.
      const outputLeft = o.expiresAt - now;
      assert.ok(outputLeft >= MARGIN_S * 1000, `at ${(now - start) / HOUR}h ${o.path} has ${outputLeft / 60_000} min left, less than the margin`);
    }
    const left = all[1]!.expiresAt! - now;
    assert.ok(left >= MARGIN_S * 1000, `at ${(now - start) / HOUR}h the token has ${left / 60_000} min left, less than the margin`);
    assert.ok(await rig.accepted(token), `at ${(now - start) / HOUR}h the emulator accepts the token`);
    tokens.add(token);
    checks++;
  };
  await agent.start();
  // A reader that keeps reading and parsing every file while the agent works, as consumers do.
  let reading = true;
  let reads = 0;
  let readError: unknown = null;
  const reader = (async () => {
    while (reading) {
      try {
        await readAll();
        reads++;
      } catch (err) {
        readError ??= err;
      }
      await new Promise((r) => setImmediate(r));
    }
  })();

  try {
    await check();
    await runUntil(rig, agent, start + 24 * HOUR, 5 * 60_000, check);
    // The last token is still accepted at the end of the day.
    assert.ok(await rig.accepted([...tokens].at(-1)!));
  } finally {
    await agent.stop();
    reading = false;
    await reader;
  }

  assert.equal(readError, null, `a reader saw a file it could not parse: ${String(readError)}`);
  assert.ok(reads > 0);
  assert.ok(checks >= 24 * 12, `checked every 5 minutes (${checks})`);
  // 24 h / (4 h - 31 min) → a refresh every ~3.5 h: 7 tokens after the first.
  const refreshes = await rig.tokenCalls();
  assert.ok(tokens.size >= 7 && tokens.size <= 8, `tokens over the day: ${tokens.size}`);
  assert.equal(refreshes, tokens.size - 1, 'one refresh per new token, none wasted');
  assert.equal(statSync(join(d, 'backup.env')).mode & 0o777, 0o640, 'the env file kept its mode');
  assert.equal(statSync(join(d, 'token')).mode & 0o777, 0o600, 'a new file is 0600');
  assert.equal(readFileSync(join(d, 'backup.env'), 'utf8').split('\n').slice(0, 2).join('\n'), '# duplicity\nBACKUP_URL=dpbx:///nightly');
  assert.deepEqual(rig.logs.filter((l) => l.level === 'error' || l.level === 'warn'), []);
  assert.ok(rig.timers.pending <= 1, 'one timer per connection, no polling');
});

test('needs re-authorisation: the last token stays, ONE error line names the fix; a new login is picked up', async () => {
  const c = await rig.connect('reauth');
  const d = join(rig.dir, 'reauth');
  mkdirSync(d);
  const config = rig.config({ connection: 'reauth', outputs: [{ format: 'token', path: 'reauth/token' }, { format: 'json', path: 'reauth/token.json' }] });
  const logs = rig.logs.length;
  const agent = new Agent(config, { source: new StoreSource(rig.dk, 'test'), timers: rig.timers, logger: rig.logger, random: () => 0.5, advice: (a) => adviceLines(a).join(' ') });
  await agent.start();
  const first = readFileSync(join(d, 'token'), 'utf8');
  const firstJson = readFileSync(join(d, 'token.json'), 'utf8');
  const expiresAt = Date.parse(JSON.parse(firstJson).expires_at);
  // The account owner disconnects the app: Dropbox answers invalid_grant to the refresh token from now on.
  const revoke = await rig.emu.rpc('auth/token/revoke', undefined, first.trim());
  assert.equal(revoke.status, 200);
  // Past the refresh time, past the expiry, and a few hours of retries beyond.
  await runUntil(rig, agent, expiresAt + 3 * HOUR, 10 * 60_000);
  assert.equal(readFileSync(join(d, 'token'), 'utf8'), first, 'the last good token stays in place');
  assert.equal(readFileSync(join(d, 'token.json'), 'utf8'), firstJson);
  const errors = rig.logs.slice(logs).filter((l) => l.level === 'error');
  assert.equal(errors.length, 1, `one error line, got:\n${errors.map((e) => e.msg).join('\n')}`);
  assert.match(errors[0]!.msg, /must be authorized again/);
  assert.match(errors[0]!.msg, new RegExp(`Fix: .*Run: dropkey login --connection reauth --app ${c.appName}`));
  assert.equal(errors[0]!.obj['connection'], 'reauth');
  const status = agent.status();
  assert.equal(status.ok, false, 'health turns bad once the kept token has expired');
  assert.match(status.outputs[0]!.problem!, /must be authorized again/);

  // Fixed by a new login (here: importing a new refresh token): the agent notices on its next check.
  await rig.dk.import({ connection: 'reauth', app: c.appName, refreshToken: await c.grant() });
  await runUntil(rig, agent, rig.timers.now() + 10 * 60_000, 60_000);
  const fresh = readFileSync(join(d, 'token'), 'utf8').trim();
  assert.notEqual(fresh, first.trim());
  assert.ok(await rig.accepted(fresh));
  assert.ok(rig.logs.slice(logs).some((l) => l.level === 'info' && /works again/.test(l.msg)));
  assert.equal(agent.status().ok, true);
  await agent.stop();
});

test('Dropbox failing: retried with growing, jittered delays; nothing is written until a token is had; no error while the kept token is valid', async () => {
  await rig.connect('flaky');
  const d = join(rig.dir, 'flaky');
  mkdirSync(d);
  const config = rig.config({ connection: 'flaky', outputs: [{ format: 'token', path: 'flaky/token' }] });
  const logs = rig.logs.length;
  const agent = new Agent(config, { source: new StoreSource(rig.dk, 'test'), timers: rig.timers, logger: rig.logger, random: () => 0 });
  await agent.start();
  const first = readFileSync(join(d, 'token'), 'utf8');
  const firstMtime = statSync(join(d, 'token')).mtimeMs;
  // The facade tries 4 times per fetch: 12 failures = 3 failed agent attempts.
  await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 12 });
  const exp = (await rig.dk.get('flaky')).expiresAt!;
  const wake = exp - (MARGIN_S + 60) * 1000;
  await runUntil(rig, agent, wake, 30 * 60_000);
  assert.equal(readFileSync(join(d, 'token'), 'utf8'), first);
  const retries: number[] = [];
  await runUntil(rig, agent, wake + 10 * 60_000, 1000, async () => {
    const w = rig.logs.slice(logs).filter((l) => l.level === 'warn');
    if (w.length > retries.length) retries.push(...w.slice(retries.length).map((x) => Number(x.obj['retry_in_s'])));
    // Until a fetch succeeds the file is never touched.
    if (readFileSync(join(d, 'token'), 'utf8') !== first) return;
    assert.equal(statSync(join(d, 'token')).mtimeMs, firstMtime);
  });
  // random() = 0: each delay is half of 5 s, 10 s, 20 s.
  assert.deepEqual(retries, [3, 5, 10]);
  const now = readFileSync(join(d, 'token'), 'utf8');
  assert.notEqual(now, first, 'a new token once Dropbox recovered');
  assert.ok(await rig.accepted(now.trim()));
  assert.deepEqual(rig.logs.slice(logs).filter((l) => l.level === 'error'), []);
  assert.ok(rig.logs.slice(logs).some((l) => /getting a token works again/.test(l.msg)));
  await agent.stop();
});

test('a damaged file is never overwritten; the other outputs of the connection are still written; commands run after each write', async () => {
  await rig.connect('damaged');
  const d = join(rig.dir, 'damaged');
  mkdirSync(d);
  writeFileSync(join(d, 'connections.json'), '{"postgres_default": {"conn_type": "postgres",');
  const config = rig.config({
    connection: 'damaged',
    outputs: [
      { format: 'airflow', path: 'damaged/connections.json', command: 'reload airflow' },
      { format: 'token', path: 'damaged/token', command: ['notify', 'token'] },
    ],
  });
  const logs = rig.logs.length;
  const ran: Array<{ argv: readonly string[]; env: Record<string, string | undefined> }> = [];
  const agent = new Agent(config, {
    source: new StoreSource(rig.dk, 'test'),
    timers: rig.timers,
    logger: rig.logger,
    env: { PATH: '/usr/bin', DROPKEY_MASTER_KEY: 'k'.repeat(44), DROPKEY_DATABASE_URL: 'postgres://u:pw@db/x' },
    runCommand: async (argv, o) => {
      ran.push({ argv, env: o.env });
      return { code: 0, signal: null, timedOut: false, output: '' };
    },
  });
  await agent.start();
  assert.equal(readFileSync(join(d, 'connections.json'), 'utf8'), '{"postgres_default": {"conn_type": "postgres",');
  assert.match(readFileSync(join(d, 'token'), 'utf8'), /^sl\./);
  const errors = rig.logs.slice(logs).filter((l) => l.level === 'error');
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.msg, /could not write .*connections\.json/);
  assert.equal(ran.length, 1, 'only the written output ran its command');
  assert.deepEqual(ran[0]!.argv, ['notify', 'token']);
  assert.equal(ran[0]!.env['DROPKEY_OUTPUT_PATH'], join(d, 'token'));
  assert.equal(ran[0]!.env['DROPKEY_CONNECTION'], 'damaged');
  assert.equal(ran[0]!.env['PATH'], '/usr/bin');
  assert.equal(ran[0]!.env['DROPKEY_MASTER_KEY'], undefined, 'the store\'s secrets stay with the agent');
  assert.equal(ran[0]!.env['DROPKEY_DATABASE_URL'], undefined);
  assert.ok(!Object.values(ran[0]!.env).some((v) => v?.startsWith('sl.')), 'the command never gets the token itself');
  assert.equal(agent.status().ok, false);

  // Repaired by its owner: the retry writes it (keeping their connection) and runs its command.
  writeFileSync(join(d, 'connections.json'), '{"postgres_default": {"conn_type": "postgres"}}\n');
  await runUntil(rig, agent, rig.timers.now() + 60_000, 1000);
  const af = JSON.parse(readFileSync(join(d, 'connections.json'), 'utf8'));
  assert.deepEqual(af.postgres_default, { conn_type: 'postgres' });
  assert.match(af.damaged.password, /^sl\./);
  assert.deepEqual(ran.at(-1)!.argv, ['/bin/sh', '-c', 'reload airflow']);
  assert.equal(agent.status().ok, true);
  await agent.stop();
});

test('--once: every output written, no timer left; reload keeps unchanged outputs and writes new ones', async () => {
  await rig.connect('once');
  const d = join(rig.dir, 'once');
  mkdirSync(d);
  const one = rig.config({ connection: 'once', outputs: [{ format: 'token', path: 'once/a' }] });
  const onceAgent = new Agent(one, { source: new StoreSource(rig.dk, 'test'), timers: rig.timers, logger: rig.logger });
  const pending = rig.timers.pending;
  assert.equal(await onceAgent.runOnce(), true);
  assert.equal(rig.timers.pending, pending, '--once arms no timer');
  assert.match(readFileSync(join(d, 'a'), 'utf8'), /^sl\./);

  const agent = new Agent(one, { source: new StoreSource(rig.dk, 'test'), timers: rig.timers, logger: rig.logger });
  await agent.start();
  const aMtime = statSync(join(d, 'a')).mtimeMs;
  const two = rig.config({ connection: 'once', outputs: [{ format: 'token', path: 'once/a' }, { format: 'env', path: 'once/b.env', variables: ['DPBX_ACCESS_TOKEN'] }] });
  await agent.reload(two, new StoreSource(rig.dk, 'test'));
  assert.equal(parseDotenv(readFileSync(join(d, 'b.env'), 'utf8'))['DPBX_ACCESS_TOKEN'], readFileSync(join(d, 'a'), 'utf8').trim());
  assert.equal(statSync(join(d, 'a')).mtimeMs, aMtime, 'an unchanged output is not rewritten on reload');
  await agent.stop();
});
