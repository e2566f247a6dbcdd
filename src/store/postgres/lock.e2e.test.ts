/**
 * Several real processes on one PostgreSQL store: lock exclusivity, a SIGKILLed holder's lease freed at once (its
 * liveness session ends with the process), a frozen but connected holder (SIGSTOP) taken over after the ttl and
 * told so when it resumes, and concurrent first-time migrations.
 * The same file is the child program: run with `--child MODE SCHEMA ...` it registers no tests and acts as one process.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, it, test } from 'node:test';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { sampleApp, sampleConnection } from '../contract.js';
import { Keyring } from '../cipher.js';
import { openPostgresStore } from './index.js';
import { migrations } from './migrations.js';
import { dropSchema, freshSchemaName, SKIP_REASON, TEST_DATABASE_URL, withAdmin } from './test-helpers.js';

/** How much earlier than the holder's printed acquisition time the lease may have started (see the ttl tests). */
const SLACK_MS = 250;

const SELF = fileURLToPath(import.meta.url);
const childAt = process.argv.indexOf('--child');
/** Every process of one test shares this key (the parent passes it to children in the environment). */
const KEY_ENV = 'DROPKEY_TEST_PG_KEY';

if (childAt !== -1) {
  await child(process.argv.slice(childAt + 1));
} else if (!TEST_DATABASE_URL) {
  test('PostgreSQL multi-process locks', { skip: SKIP_REASON }, () => {});
} else {
  tests(TEST_DATABASE_URL);
}

// ---- child side ------------------------------------------------------------------------------------------------

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function barrier(): Promise<void> {
  say('ready');
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) if (line === 'go') break;
  rl.close();
}

function keyring(): Keyring {
  return Keyring.fromKey(Buffer.from(process.env[KEY_ENV]!, 'hex'));
}

async function child([mode, schema, ...args]: string[]): Promise<void> {
  const url = TEST_DATABASE_URL;
  if (!schema || !url) throw new Error('child: no schema or database');
  const open = () => openPostgresStore({ connectionString: url, keyring: keyring(), schema, maxConnections: 3 });
  if (mode === 'migrate') {
    await barrier();
    const s = await open();
    await s.createApp(sampleApp(`app-${process.pid}`, { secret: `secret-of-${process.pid}` }));
    await s.close();
    say('done');
    return;
  }
  const s = await open();
  if (mode === 'counter') {
    const iterations = Number(args[0]);
    await barrier();
    await withAdmin(async (raw) => {
      for (let i = 0; i < iterations; i++) {
        await s.withLock('counter', { ttlMs: 5_000, waitMs: 60_000 }, async () => {
          const me = String(process.pid);
          // A raw marker row catches any overlap between processes inside the critical section.
          const mark = await raw.query(`UPDATE "${schema}".test_marker SET holder = $1 WHERE holder = ''`, [me]);
          if (mark.rowCount !== 1) await raw.query(`UPDATE "${schema}".test_marker SET overlap_count = overlap_count + 1`);
          // Read-modify-write through the store with a pause in between: without the lock, updates get lost.
          const c = await s.getConnection('default');
          await new Promise((r) => setTimeout(r, Math.random() < 0.3 ? 1 : 0));
          await s.updateConnection('default', { accessTokenExpiresAt: (c!.accessTokenExpiresAt ?? 0) + 1 });
          const unmark = await raw.query(`UPDATE "${schema}".test_marker SET holder = '' WHERE holder = $1`, [me]);
          if (unmark.rowCount !== 1) await raw.query(`UPDATE "${schema}".test_marker SET overlap_count = overlap_count + 1`);
        });
      }
    });
    await s.close();
    say('done');
    return;
  }
  if (mode === 'hold') {
    // Takes the lock, then holds it forever (to be killed) or for a given time.
    const ttlMs = Number(args[0]);
    const holdMs = args[1] === undefined ? undefined : Number(args[1]);
    await s.withLock('k', { ttlMs, waitMs: 0 }, async (lease) => {
      say(`acquired ${Date.now()}`);
      if (holdMs === undefined) await new Promise(() => setInterval(() => {}, 1 << 30));
      await new Promise((r) => setTimeout(r, holdMs));
      say(`releasing ${Date.now()} lost=${lease.signal.aborted}`);
    });
    await s.close();
    return;
  }
  throw new Error(`child: unknown mode ${mode}`);
}

// ---- parent side -----------------------------------------------------------------------------------------------

interface Child {
  proc: ChildProcessWithoutNullStreams;
  waitFor(prefix: string): Promise<string>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly stderr: string;
}

/** Children still running; killed after each test so a failed assertion never leaves a stopped child behind. */
const live = new Set<ChildProcessWithoutNullStreams>();

function start(key: string, ...args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', SELF, '--child', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, [KEY_ENV]: key },
  });
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: proc.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (line.startsWith(w.prefix)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      for (const w of waiters) w.resolve(`exited before "${w.prefix}": ${stderr}`);
      resolve({ code, signal });
    }),
  );
  return {
    proc,
    exit,
    waitFor: (prefix) => {
      const seen = lines.find((l) => l.startsWith(prefix));
      return seen !== undefined ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ prefix, resolve }));
    },
    get stderr() {
      return stderr;
    },
  };
}

async function startTogether(n: number, key: string, ...args: string[]): Promise<Child[]> {
  const children = Array.from({ length: n }, () => start(key, ...args));
  for (const c of children) assert.equal(await c.waitFor('ready'), 'ready', c.stderr);
  for (const c of children) c.proc.stdin.write('go\n');
  return children;
}

async function expectClean(c: Child): Promise<void> {
  const { code, signal } = await c.exit;
  assert.equal(code, 0, `child failed (signal ${signal}): ${c.stderr}`);
}

function tests(url: string): void {
  async function withSchema(fn: (schema: string, key: Buffer) => Promise<void>): Promise<void> {
    const schema = freshSchemaName();
    try {
      await fn(schema, randomBytes(32));
    } finally {
      await dropSchema(schema);
    }
  }
  const open = (schema: string, key: Buffer) => openPostgresStore({ connectionString: url, keyring: Keyring.fromKey(key), schema });

  describe('PostgreSQL store shared by several processes', () => {
    afterEach(() => {
      for (const proc of live) {
        proc.kill('SIGKILL'); // a SIGSTOPped child dies too; SIGCONT is not needed for SIGKILL
      }
    });
    it('4 processes x 25 locked read-modify-writes: no lost update, never two inside', () =>
      withSchema(async (schema, key) => {
        const s = await open(schema, key);
        try {
          await s.createApp(sampleApp());
          await s.createConnection(sampleConnection('default', 'backup', { accessTokenExpiresAt: 0 }));
          await withAdmin((c) => c.query(`CREATE TABLE "${schema}".test_marker AS SELECT ''::text AS holder, 0 AS overlap_count`));
          const started = Date.now();
          const children = await startTogether(4, key.toString('hex'), 'counter', schema, '25');
          for (const c of children) await expectClean(c);
          const elapsed = Date.now() - started;
          const conn = await s.getConnection('default');
          assert.equal(conn!.accessTokenExpiresAt, 100);
          assert.equal(conn!.version, 101);
          const m = await withAdmin((c) => c.query(`SELECT overlap_count FROM "${schema}".test_marker`));
          assert.equal(m.rows[0].overlap_count, 0);
          process.stdout.write(`100 locked sections over 4 processes in ${elapsed} ms\n`);
        } finally {
          await s.close();
        }
      }));

    it('a SIGKILLed holder frees the lock at once (its liveness session ends), long before its ttl', () =>
      withSchema(async (schema, key) => {
        const s = await open(schema, key);
        try {
          const ttlMs = 60_000;
          const holder = start(key.toString('hex'), 'hold', schema, String(ttlMs));
          await holder.waitFor('acquired');
          await assert.rejects(s.withLock('k', { ttlMs, waitMs: 0 }, async () => {}), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.LOCK_TIMEOUT);
          const killedAt = Date.now();
          holder.proc.kill('SIGKILL');
          assert.equal((await holder.exit).signal, 'SIGKILL');
          // waitMs is far below the ttl: only the ended session can free the lease this fast.
          const gotAt = await s.withLock('k', { ttlMs, waitMs: 10_000 }, async () => Date.now());
          process.stdout.write(`lock taken ${gotAt - killedAt} ms after SIGKILL of the holder (ttl ${ttlMs} ms)\n`);
          assert.ok(gotAt - killedAt < 10_000);
        } finally {
          await s.close();
        }
      }));

    it('a lease whose session was recorded before a server restart is not taken through that session: the ttl applies', () =>
      withSchema(async (schema, key) => {
        const s = await open(schema, key);
        try {
          const ttlMs = 1_500;
          const holder = start(key.toString('hex'), 'hold', schema, String(ttlMs));
          const acquiredAt = Number((await holder.waitFor('acquired')).split(' ')[1]);
          holder.proc.kill('SIGSTOP'); // no heartbeat may re-record the session from here on
          // As if PostgreSQL restarted after the holder recorded its session (every session ended, the holder's
          // process may well be alive and about to reconnect).
          await withAdmin((c) => c.query(`UPDATE "${schema}".locks SET session_stamped_at = pg_postmaster_start_time() - interval '1 second'`));
          holder.proc.kill('SIGKILL');
          await holder.exit;
          await assert.rejects(s.withLock('k', { ttlMs, waitMs: 0 }, async () => {}), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.LOCK_TIMEOUT);
          const gotAt = await s.withLock('k', { ttlMs, waitMs: 10_000 }, async () => Date.now());
          // The lease starts at the database's now() inside the acquiring statement, a little before the holder can
          // print its own timestamp; on a loaded machine that gap reaches tens of ms. A takeover through the dead
          // session would come at once, far below this bound.
          assert.ok(gotAt - acquiredAt >= ttlMs - SLACK_MS, `taken ${gotAt - acquiredAt} ms after acquisition, before the ttl`);
        } finally {
          await s.close();
        }
      }));

    it('a frozen holder that stays connected (SIGSTOP) is taken over after its ttl, and learns it when it resumes', () =>
      withSchema(async (schema, key) => {
        const s = await open(schema, key);
        try {
          const ttlMs = 1_500;
          const holder = start(key.toString('hex'), 'hold', schema, String(ttlMs), '4000');
          const acquiredAt = Number((await holder.waitFor('acquired')).split(' ')[1]);
          holder.proc.kill('SIGSTOP');
          const gotAt = await s.withLock('k', { ttlMs, waitMs: 20_000 }, async () => Date.now());
          const after = gotAt - acquiredAt;
          assert.ok(after >= ttlMs - SLACK_MS, `taken over ${after} ms after acquisition, before the ${ttlMs} ms ttl`);
          assert.ok(after < ttlMs + 2_000, `taken over only after ${after} ms`);
          holder.proc.kill('SIGCONT');
          const releasing = await holder.waitFor('releasing');
          assert.match(releasing, /lost=true$/, 'the resumed holder is told its lease was lost');
          await expectClean(holder);
        } finally {
          await s.close();
        }
      }));

    it('a live holder keeps the lock past its ttl (heartbeat); others get it when it releases', () =>
      withSchema(async (schema, key) => {
        const s = await open(schema, key);
        try {
          const holder = start(key.toString('hex'), 'hold', schema, '300', '1500');
          const acquiredAt = Number((await holder.waitFor('acquired')).split(' ')[1]);
          const gotAt = await s.withLock('k', { ttlMs: 300, waitMs: 10_000 }, async () => Date.now());
          const [, releasedAt, lost] = (await holder.waitFor('releasing')).split(' ');
          assert.equal(lost, 'lost=false');
          assert.ok(gotAt >= Number(releasedAt), `got the lock at ${gotAt}, before the holder released at ${releasedAt}`);
          assert.ok(gotAt - acquiredAt >= 1_500);
          await expectClean(holder);
        } finally {
          await s.close();
        }
      }));

    it('4 processes opening an empty schema at once: all succeed, migrations applied once', () =>
      withSchema(async (schema, key) => {
        const children = await startTogether(4, key.toString('hex'), 'migrate', schema);
        for (const c of children) await expectClean(c);
        const s = await open(schema, key);
        try {
          const apps = await s.listApps();
          assert.equal(apps.length, 4);
          for (const a of apps) assert.equal(a.secret, `secret-of-${a.name.slice(4)}`);
          const rows = await withAdmin((c) => c.query(`SELECT version FROM "${schema}".schema_migrations ORDER BY version`));
          assert.deepEqual(rows.rows, migrations.map((m) => ({ version: m.version })));
        } finally {
          await s.close();
        }
      }));
  });
}
