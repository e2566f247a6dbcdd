/**
 * The LockStore contract: named locks shared by every handle, process and instance on one database. Two suites,
 * each run against every driver:
 * - lockContractTests: handles in this process on virtual time (fast, deterministic): exclusivity, heartbeat,
 *   takeover of a dead holder, timeouts, cancellation;
 * - lockProcessTests: real processes (this test's children, ./lock-child.test-support.ts) opening the store the way
 *   `dropkey` does: no lost update across processes, a SIGKILLed or SIGSTOPped holder, a heartbeat past the ttl,
 *   and concurrent first-time migrations with one key file.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, it } from 'node:test';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { openStores } from '../index.js';
import type { LockStore, Stores } from '../types.js';
import { deferred, rejectsWith, sampleApp, sampleConnection, withOne, type Harness } from './core.test-support.js';
import { withHarness, type DriverHarness, type DriverUnderTest } from './harness.test-support.js';
import { FrozenSleep, VirtualTime } from './virtual-time.test-support.js';

export function lockContractTests(name: string, makeHarness: () => Promise<Harness<LockStore>>): void {
  const withStore = (fn: (s: LockStore, vt: VirtualTime, h: Harness<LockStore>) => Promise<void>) => withOne(makeHarness, fn);

  describe(`Lock contract: ${name}`, () => {
    const lock = { ttlMs: 10_000, waitMs: 60_000 };

    it('is exclusive across handles: 3 handles x 4 tasks never overlap and lose no update', async () => {
      const h = await makeHarness();
      try {
        const vt = new VirtualTime(undefined, h.settle);
        const stores = [];
        for (let i = 0; i < 3; i++) stores.push(await h.open({ clock: vt.clock, sleep: vt.sleep }));
        let inside = 0;
        let maxInside = 0;
        let counter = 0;
        const tasks = stores.flatMap((s) =>
          Array.from({ length: 4 }, () =>
            s.withLock('refresh:default', lock, async () => {
              inside++;
              maxInside = Math.max(maxInside, inside);
              const read = counter;
              await vt.sleep(7); // work that takes time while others poll
              counter = read + 1;
              inside--;
            }),
          ),
        );
        await vt.runUntil(Promise.all(tasks));
        assert.equal(maxInside, 1);
        assert.equal(counter, 12);
      } finally {
        await h.cleanup();
      }
    });

    it('returns fn’s value, rethrows fn’s error, and releases the lock either way', () =>
      withStore(async (s) => {
        assert.equal(await s.withLock('k', lock, async () => 42), 42);
        await assert.rejects(s.withLock('k', lock, async () => Promise.reject(new Error('boom'))), /boom/);
        assert.equal(await s.withLock('k', { ttlMs: 10_000, waitMs: 0 }, async () => 'free'), 'free');
      }));

    it('different keys do not block each other', () =>
      withStore(async (s, vt) => {
        const hold = deferred();
        const a = s.withLock('refresh:a', lock, () => hold.promise);
        await vt.settle();
        assert.equal(await s.withLock('refresh:b', { ttlMs: 10_000, waitMs: 0 }, async () => 'b'), 'b');
        hold.resolve();
        await vt.runUntil(a);
      }));

    it('times out with LOCK_TIMEOUT after waitMs while a live holder keeps it', async () => {
      const h = await makeHarness();
      try {
        const vt = new VirtualTime(undefined, h.settle);
        const a = await h.open({ clock: vt.clock, sleep: vt.sleep });
        const b = await h.open({ clock: vt.clock, sleep: vt.sleep });
        const hold = deferred();
        const holding = a.withLock('refresh:default', { ttlMs: 3_000, waitMs: 0 }, () => hold.promise);
        await vt.settle();
        const t0 = vt.clock();
        let ran = false;
        const err = await vt
          .runUntil(b.withLock('refresh:default', { ttlMs: 3_000, waitMs: 20_000 }, async () => void (ran = true)))
          .then(() => assert.fail('expected a timeout'), (e: unknown) => e);
        assert.ok(err instanceof DropkeyError && err.code === ErrorCodes.LOCK_TIMEOUT, String(err));
        assert.match(err.message, /refresh:default/);
        assert.ok(err.hint);
        assert.equal(ran, false);
        // 20 s is far past the 3 s ttl: only the holder's heartbeat kept the lease alive.
        assert.ok(vt.clock() - t0 >= 20_000, `waited ${vt.clock() - t0} ms`);
        hold.resolve();
        await vt.runUntil(holding);
      } finally {
        await h.cleanup();
      }
    });

    it('a slow live holder keeps the lock past ttl (heartbeat); the waiter gets it right after release', async () => {
      const h = await makeHarness();
      try {
        const vt = new VirtualTime(undefined, h.settle);
        const a = await h.open({ clock: vt.clock, sleep: vt.sleep });
        const b = await h.open({ clock: vt.clock, sleep: vt.sleep });
        const events: string[] = [];
        const t0 = vt.clock();
        let releasedAt = 0;
        const holder = a.withLock('k', { ttlMs: 1_000, waitMs: 0 }, async (lease) => {
          events.push('a in');
          await vt.sleep(10_000); // ten times the ttl
          assert.equal(lease.signal.aborted, false);
          events.push('a out');
          releasedAt = vt.clock();
        });
        await vt.settle();
        const waiter = b.withLock('k', { ttlMs: 1_000, waitMs: 60_000 }, async () => {
          events.push('b in');
          return vt.clock();
        });
        const bAt = await vt.runUntil(Promise.all([holder, waiter]).then(([, t]) => t));
        assert.deepEqual(events, ['a in', 'a out', 'b in']);
        assert.ok(releasedAt - t0 >= 10_000);
        assert.ok(bAt - releasedAt <= 200, `b got the lock ${bAt - releasedAt} ms after release`);
      } finally {
        await h.cleanup();
      }
    });

    it('a holder that died is taken over after ttlMs, and its late release does not free the new holder', async () => {
      const h = await makeHarness();
      try {
        const vt = new VirtualTime(undefined, h.settle);
        const frozen = new FrozenSleep(); // the dead process: its heartbeat never runs
        const dead = await h.open({ clock: vt.clock, sleep: frozen.sleep });
        const b = await h.open({ clock: vt.clock, sleep: vt.sleep });
        const c = await h.open({ clock: vt.clock, sleep: vt.sleep });
        const deadFn = deferred();
        let deadLease: AbortSignal | undefined;
        const deadHolding = dead.withLock('k', { ttlMs: 5_000, waitMs: 0 }, (lease) => {
          deadLease = lease.signal;
          return deadFn.promise;
        });
        await vt.settle();
        vt.jump(4_999);
        await rejectsWith(b.withLock('k', { ttlMs: 5_000, waitMs: 0 }, async () => 'early'), ErrorCodes.LOCK_TIMEOUT);
        vt.jump(1);
        const bFn = deferred<string>();
        const bHolding = b.withLock('k', { ttlMs: 5_000, waitMs: 0 }, () => bFn.promise);
        await vt.settle();
        // The dead holder comes back: its heartbeat finds the lease gone and says so, and its release is a no-op.
        frozen.thaw();
        await vt.settle();
        assert.equal(deadLease?.aborted, true, 'the old holder learns it lost the lease');
        deadFn.resolve();
        await deadHolding;
        await rejectsWith(c.withLock('k', { ttlMs: 5_000, waitMs: 0 }, async () => 'stolen'), ErrorCodes.LOCK_TIMEOUT);
        bFn.resolve('b done');
        assert.equal(await vt.runUntil(bHolding), 'b done');
        assert.equal(await c.withLock('k', { ttlMs: 5_000, waitMs: 0 }, async () => 'c'), 'c');
      } finally {
        await h.cleanup();
      }
    });

    it('waiting stops with CANCELLED when the signal aborts', () =>
      withStore(async (s, vt) => {
        const hold = deferred();
        const holding = s.withLock('k', lock, () => hold.promise);
        await vt.settle();
        const ac = new AbortController();
        const waiting = s.withLock('k', { ...lock, signal: ac.signal }, async () => 'never');
        await vt.settle();
        ac.abort();
        await rejectsWith(vt.runUntil(waiting), ErrorCodes.CANCELLED, /k/);
        hold.resolve();
        await vt.runUntil(holding);
      }));
  });
}

// ---- several processes ---------------------------------------------------------------------------------------

const CHILD = fileURLToPath(new URL('./lock-child.test-support.ts', import.meta.url));
/** How much earlier than the holder's printed acquisition time the lease may have started (see the ttl tests). */
const SLACK_MS = 250;

interface Child {
  proc: ChildProcessWithoutNullStreams;
  waitFor(prefix: string): Promise<string>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly stderr: string;
}

/** Children still running; killed after each test so a failed assertion never leaves a stopped child behind. */
const live = new Set<ChildProcessWithoutNullStreams>();

function start(h: DriverHarness, mode: string, ...args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, h.home, h.databaseUrl ?? '-', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
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

async function startTogether(n: number, h: DriverHarness, mode: string, ...args: string[]): Promise<Child[]> {
  const children = Array.from({ length: n }, () => start(h, mode, ...args));
  for (const c of children) assert.equal(await c.waitFor('ready'), 'ready', c.stderr);
  for (const c of children) c.proc.stdin.write('go\n');
  return children;
}

async function expectClean(c: Child): Promise<void> {
  const { code, signal } = await c.exit;
  assert.equal(code, 0, `child failed (signal ${signal}): ${c.stderr}`);
}

/** The stores as every dropkey process opens them: the data directory's key file, the database URL. */
function openAsProcess(h: DriverHarness): Promise<Stores> {
  return openStores({ home: h.home, databaseUrl: h.databaseUrl, warn: () => {} });
}

/** Runs fn with a fresh database and the parent's own handle on it (the first to open: it creates the key file). */
function withParent(d: DriverUnderTest, fn: (s: Stores, h: DriverHarness) => Promise<void>): Promise<void> {
  return withHarness(d.make, async (h) => {
    const s = await openAsProcess(h);
    try {
      await fn(s, h);
    } finally {
      await s.close();
    }
  });
}

export function lockProcessTests(d: DriverUnderTest): void {
  describe(`Lock contract, several processes: ${d.name}`, { ...(d.skip ? { skip: d.skip } : {}) }, () => {
    afterEach(() => {
      for (const proc of live) proc.kill('SIGKILL'); // a SIGSTOPped child dies too; SIGCONT is not needed for SIGKILL
    });

    it('4 processes x 25 locked read-modify-writes: no lost update, never two inside', () =>
      withParent(d, async (s, h) => {
        await s.core.createApp(sampleApp());
        await s.core.createConnection(sampleConnection('default', 'backup', { accessTokenExpiresAt: 0 }));
        const started = Date.now();
        const children = await startTogether(4, h, 'counter', '25');
        for (const c of children) await expectClean(c);
        const elapsed = Date.now() - started;
        const conn = await s.core.getConnection('default');
        assert.equal(conn!.accessTokenExpiresAt, 100);
        assert.equal(conn!.version, 101);
        // The children mark who is inside the critical section in a file beside the database (see the child).
        const overlaps = join(h.home, 'test-overlaps');
        assert.equal(existsSync(overlaps) ? readFileSync(overlaps, 'utf8').length : 0, 0, 'two processes were inside at once');
        process.stdout.write(`# 100 locked sections over 4 processes in ${elapsed} ms (${d.name})\n`);
      }));

    it('a SIGKILLed holder does not block others: its lease is free at once, long before its ttl', () =>
      withParent(d, async (s, h) => {
        // PostgreSQL ends the holder's liveness session with its process; SQLite sees that the holder's process (of
        // this machine, named in the lock's owner) is gone. Either way the lease is free long before a 60 s ttl.
        const ttlMs = 60_000;
        const holder = start(h, 'hold', String(ttlMs));
        await holder.waitFor('acquired');
        await assert.rejects(s.locks.withLock('k', { ttlMs, waitMs: 0 }, async () => {}), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.LOCK_TIMEOUT);
        const killedAt = Date.now();
        holder.proc.kill('SIGKILL');
        assert.equal((await holder.exit).signal, 'SIGKILL');
        const gotAt = await s.locks.withLock('k', { ttlMs, waitMs: 10_000 }, async () => Date.now());
        // waitMs is far below the ttl: only the holder's visible death can free the lease this fast.
        process.stdout.write(`# lock taken ${gotAt - killedAt} ms after SIGKILL of the holder (ttl ${ttlMs} ms, ${d.name})\n`);
        assert.ok(gotAt - killedAt < (h.driver === 'sqlite' ? 1_000 : 10_000), `taken ${gotAt - killedAt} ms after the kill`);
      }));

    it(
      'a lease whose session was recorded before a server restart is not taken through that session: the ttl applies',
      d.name === 'postgres' ? {} : { skip: 'SQLite has no liveness sessions: a dead holder is seen through its process instead (the SIGKILL case above)' },
      () =>
        withParent(d, async (s, h) => {
          const ttlMs = 1_500;
          const holder = start(h, 'hold', String(ttlMs));
          const acquiredAt = Number((await holder.waitFor('acquired')).split(' ')[1]);
          holder.proc.kill('SIGSTOP'); // no heartbeat may re-record the session from here on
          // As if PostgreSQL restarted after the holder recorded its session (every session ended, the holder's
          // process may well be alive and about to reconnect).
          await h.rows(`UPDATE locks SET session_stamped_at = pg_postmaster_start_time() - interval '1 second'`);
          holder.proc.kill('SIGKILL');
          await holder.exit;
          await assert.rejects(s.locks.withLock('k', { ttlMs, waitMs: 0 }, async () => {}), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.LOCK_TIMEOUT);
          const gotAt = await s.locks.withLock('k', { ttlMs, waitMs: 10_000 }, async () => Date.now());
          // The lease starts at the database's now() inside the acquiring statement, a little before the holder can
          // print its own timestamp; on a loaded machine that gap reaches tens of ms. A takeover through the dead
          // session would come at once, far below this bound.
          assert.ok(gotAt - acquiredAt >= ttlMs - SLACK_MS, `taken ${gotAt - acquiredAt} ms after acquisition, before the ttl`);
        }),
    );

    it(
      'a holder that cannot be checked (another machine, an older dropkey) blocks others only until its ttl runs out',
      d.name === 'sqlite' ? {} : { skip: 'PostgreSQL checks holders through their sessions (the cases above)' },
      () =>
        withParent(d, async (s, h) => {
          const ttlMs = 1_500;
          // A pid surely dead here, but on another host; and a bare uuid as older versions wrote.
          for (const owner of ['999999999@another-host.example#00000000', '5f0c6a4e-0000-4000-8000-000000000000']) {
            const acquiredAt = Date.now();
            await h.rows('INSERT INTO locks (name, owner, expires_at, acquired_at) VALUES ($1, $2, $3, $4)', ['k', owner, acquiredAt + ttlMs, acquiredAt]);
            await assert.rejects(s.locks.withLock('k', { ttlMs, waitMs: 0 }, async () => {}), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.LOCK_TIMEOUT);
            const gotAt = await s.locks.withLock('k', { ttlMs, waitMs: 10_000 }, async () => Date.now());
            const after = gotAt - acquiredAt;
            assert.ok(after >= ttlMs - 5, `${owner}: taken over ${after} ms after acquisition, before the ${ttlMs} ms ttl`);
            assert.ok(after < ttlMs + 1_000, `${owner}: taken over only after ${after} ms`);
          }
        }),
    );

    it('a frozen holder that stays connected (SIGSTOP) is taken over after its ttl, and learns it when it resumes', () =>
      withParent(d, async (s, h) => {
        const ttlMs = 1_500;
        const holder = start(h, 'hold', String(ttlMs), '4000');
        const acquiredAt = Number((await holder.waitFor('acquired')).split(' ')[1]);
        holder.proc.kill('SIGSTOP');
        const gotAt = await s.locks.withLock('k', { ttlMs, waitMs: 20_000 }, async () => Date.now());
        const after = gotAt - acquiredAt;
        assert.ok(after >= ttlMs - SLACK_MS, `taken over ${after} ms after acquisition, before the ${ttlMs} ms ttl`);
        assert.ok(after < ttlMs + 2_000, `taken over only after ${after} ms`);
        holder.proc.kill('SIGCONT');
        const releasing = await holder.waitFor('releasing');
        assert.match(releasing, /lost=true$/, 'the resumed holder is told its lease was lost');
        await expectClean(holder);
      }));

    it('a live holder keeps the lock past its ttl (heartbeat); others get it when it releases', () =>
      withParent(d, async (s, h) => {
        const holder = start(h, 'hold', '300', '1500');
        const acquiredAt = Number((await holder.waitFor('acquired')).split(' ')[1]);
        const gotAt = await s.locks.withLock('k', { ttlMs: 300, waitMs: 10_000 }, async () => Date.now());
        const [, releasedAt, lost] = (await holder.waitFor('releasing')).split(' ');
        assert.equal(lost, 'lost=false');
        assert.ok(gotAt >= Number(releasedAt), `got the lock at ${gotAt}, before the holder released at ${releasedAt}`);
        assert.ok(gotAt - acquiredAt >= 1_500);
        await expectClean(holder);
      }));

    it('4 processes opening a fresh data directory and database at once: one key file, migrations applied once, all succeed', () =>
      withHarness(d.make, async (h) => {
        const children = await startTogether(4, h, 'migrate');
        for (const c of children) await expectClean(c);
        assert.deepEqual(readdirSync(h.home).filter((f) => !f.startsWith('dropkey.db')), ['master.key'], 'one key file, no temporary files');
        const s = await openAsProcess(h);
        try {
          const apps = await s.core.listApps();
          assert.equal(apps.length, 4);
          for (const a of apps) assert.equal(a.secret, `secret-of-${a.name.slice(4)}`);
        } finally {
          await s.close();
        }
        assert.deepEqual(await h.rows('SELECT version FROM schema_migrations ORDER BY version'), h.migrations.map((version) => ({ version })));
      }));
  });
}
