/**
 * CLI actions on the store a running `dropkey serve` uses: the built CLI (a separate process, like a user's shell)
 * imports, exports and revokes; the server's audit log lists each action as `cli:<user>`, and the server's webhook
 * worker delivers the connection events the CLI queued to a receiver on 127.0.0.1. A CLI whose audit write fails
 * still revokes, and says so on stderr.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import Database from 'better-sqlite3';
import { run } from '../../src/cli/index.js';
import revokeCommand from '../../src/cli/commands/revoke.js';
import { readConfig } from '../../src/config.js';
import { Dropkey } from '../../src/connections/dropkey.js';
import { dropboxUrlsFromBase } from '../../src/dropbox/hosts.js';
import { startServer, type RunningServer } from '../../src/server/main.js';
import { startEmulator, type StartedEmulator } from '../helpers/emulator.js';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = process.env['DROPKEY_CLI_MAIN'] ? resolve(process.env['DROPKEY_CLI_MAIN']) : join(ROOT, 'dist/cli/dropkey.cjs');
if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run "npm run build" before the end-to-end tests`);

/** `revoke` asks for confirmation on a terminal once --yes exists; pass it only if this build has it. */
const YES = 'yes' in revokeCommand.options ? ['--yes'] : [];

let emu: StartedEmulator;
let home: string;
let env: Record<string, string>;
let server: RunningServer;
const stop = new AbortController();
let receiver: Server;
let receiverUrl: string;
const received: { type: string; connection: string | null; data: Record<string, unknown> }[] = [];
const waiters: (() => void)[] = [];
let adminKey: string;

function bin(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, cwd: home, stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end(stdin ?? '');
  return new Promise((res) => child.on('close', (code) => res({ code, stdout, stderr })));
}

async function inProcess(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  const code = await run(args, { env: env, cwd: home, stdin: new PassThrough(), stdout: out, stderr: err, signal: new AbortController().signal });
  return { code, out: o, err: e };
}

/** Resolves when the receiver got an event of `type` for `connection` (the server polls the outbox every 100 ms here). */
async function eventFor(type: string, connection: string, timeoutMs = 15_000): Promise<(typeof received)[number]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = received.find((e) => e.type === type && e.connection === connection);
    if (hit) return hit;
    const left = deadline - Date.now();
    if (left <= 0) assert.fail(`no ${type} for ${connection} reached the receiver; got ${JSON.stringify(received.map((e) => e.type))}`);
    await new Promise<void>((res) => {
      const t = setTimeout(res, left);
      waiters.push(() => {
        clearTimeout(t);
        res();
      });
    });
  }
}

async function api(path: string): Promise<any> {
  const res = await fetch(`${server.url}/api/v1${path}`, { headers: { Authorization: `Bearer ${adminKey}` } });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

async function grant(): Promise<string> {
  const account = await emu.control.createAccount();
  const g = await emu.control.grant({ app: appKey, account: account.account_id, token_access_type: 'offline' });
  return g.refresh_token!;
}
let appKey: string;
/** The actor of a CLI action: the OS account running it. */
const ACTOR = `cli:${userInfo().username}`;

before(async () => {
  emu = await startEmulator({});
  home = mkdtempSync(join(tmpdir(), 'dropkey-cli-activity-'));
  env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: randomBytes(32).toString('base64'), DROPKEY_DROPBOX_URL: emu.url };
  const app = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  appKey = app.key;
  const dk = await Dropkey.open({ home, masterKey: env['DROPKEY_MASTER_KEY']!, urls: dropboxUrlsFromBase(emu.url) });
  await dk.addApp({ name: 'main', key: app.key, secret: app.secret! });
  await dk.import({ connection: 'alpha', app: 'main', refreshToken: await grant() });
  await dk.close();

  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push(JSON.parse(body));
      res.writeHead(204).end();
      for (const w of waiters.splice(0)) w();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

  server = await startServer({
    config: await readConfig(env),
    port: 0,
    stdout: new PassThrough(),
    logStream: new PassThrough(),
    signal: stop.signal,
    serverConfig: { webhookPollMs: 100 },
  });
  const made = await inProcess(['apikey', 'create', '--name', 'ops', '--permission', 'admin', '--all-connections']);
  assert.equal(made.code, 0, made.err);
  adminKey = made.out.trim();
  const res = await fetch(`${server.url}/api/v1/webhooks`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${adminKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ url: receiverUrl }),
  });
  assert.equal(res.status, 201, await res.text());
});

after(async () => {
  stop.abort();
  await server?.done;
  await new Promise((r) => receiver?.close(r));
  await emu?.close();
  rmSync(home, { recursive: true, force: true });
});

describe('CLI actions reach the audit log and a running server\'s webhooks', () => {
  test('dropkey revoke: the receiver gets connection.revoked and the audit API lists the CLI action', async () => {
    const r = await bin(['revoke', '--connection', 'alpha', ...YES]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Revoked "alpha"/);
    const ev = await eventFor('connection.revoked', 'alpha');
    assert.equal(ev.data['app'], 'main');
    assert.equal(ev.data['revoked_at_dropbox'], true);
    const { entries } = await api('/audit?target=alpha&action=connection.revoked');
    assert.equal(entries.length, 1);
    assert.equal(entries[0].actor, ACTOR);
    assert.deepEqual(entries[0].details, { revoked_at_dropbox: true });
  });

  test('dropkey import announces connection.created; dropkey export is audited (never what it printed)', async () => {
    const token = await grant();
    const imp = await bin(['import', '--app', 'main', '--connection', 'beta', '--refresh-token', '-'], `${token}\n`);
    assert.equal(imp.code, 0, imp.stderr);
    const ev = await eventFor('connection.created', 'beta');
    assert.equal(ev.data['app'], 'main');
    const exp = await bin(['export', '--connection', 'beta', '--format', 'env']);
    assert.equal(exp.code, 0, exp.stderr);
    const { entries } = await api('/audit?target=beta');
    assert.deepEqual(entries.map((e: any) => [e.action, e.actor]), [['connection.exported', ACTOR], ['connection.created', ACTOR]]);
    assert.equal(entries[0].details.format, 'env');
    assert.equal(JSON.stringify(entries).includes(token), false, 'no secret in the audit log');
  });

  test('a failed audit write does not make a successful revoke look failed: it is a warning', async () => {
    const imp = await inProcess(['import', '--app', 'main', '--connection', 'gamma', '--refresh-token', await grant()]);
    assert.equal(imp.code, 0, imp.err);
    // The audit table goes away under the CLI's feet (a damaged or read-only store): the action itself must stand.
    const db = new Database(join(home, 'dropkey.db'));
    db.exec('ALTER TABLE server_audit RENAME TO server_audit_away');
    try {
      const r = await inProcess(['revoke', '--connection', 'gamma', ...YES]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /Revoked "gamma"/);
      assert.match(r.err, /^dropkey: warning: connection\.revoked "gamma" was done, but could not be written to the audit log: /m);
    } finally {
      db.exec('ALTER TABLE server_audit_away RENAME TO server_audit');
      db.close();
    }
    // The event still went out: the outbox is another table.
    await eventFor('connection.revoked', 'gamma');
  });
});
