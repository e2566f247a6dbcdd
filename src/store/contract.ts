/**
 * The Store contract: one suite every driver runs (src/store/sqlite/sqlite.test.ts; the PostgreSQL driver of
 * issue 5 runs it too). A harness opens any number of handles on ONE fresh database, the way separate processes
 * or instances would; lock tests use virtual time (src/store/virtual-time.ts) so they are fast and deterministic.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DropkeyError, ErrorCodes, type ErrorCode } from '../errors.js';
import type { AppRecord, Clock, ConnectionRecord, Sleep, Store } from './types.js';
import { FrozenSleep, VirtualTime } from './virtual-time.js';

export interface StoreHarness {
  /** Opens another handle on the same database (as another process would), with the given clock and sleep. */
  open(options: { clock: Clock; sleep: Sleep }): Promise<Store>;
  /** Closes what open() opened and deletes the database. */
  cleanup(): Promise<void>;
  /** How VirtualTime lets woken tasks run; drivers with network I/O supply their own. */
  settle?: () => Promise<void>;
}

type NewApp = Omit<AppRecord, 'createdAt' | 'updatedAt'>;
type NewConnection = Omit<ConnectionRecord, 'createdAt' | 'updatedAt' | 'version'>;

export const sampleApp = (name = 'backup', over: Partial<NewApp> = {}): NewApp => ({
  name,
  key: `key-${name}`,
  secret: `app-secret-${name}-Zx9`,
  scopes: ['files.content.read', 'account_info.read'],
  team: false,
  access: 'full',
  ...over,
});

export const sampleConnection = (name = 'default', app = 'backup', over: Partial<NewConnection> = {}): NewConnection => ({
  name,
  app,
  accountId: 'dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc',
  teamId: null,
  email: 'franz@example.com',
  displayName: 'Franz Ferdinand',
  teamName: null,
  scopes: ['files.content.read'],
  accessToken: `sl.access-${name}-${'A'.repeat(40)}`,
  accessTokenExpiresAt: Date.UTC(2026, 0, 1, 4),
  refreshToken: `refresh-${name}-${'R'.repeat(30)}`,
  state: 'active',
  lastError: null,
  lastRefreshAt: null,
  ...over,
});

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, re?: RegExp): Promise<DropkeyError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DropkeyError, `expected a DropkeyError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    if (re) assert.match(err.message + '\n' + (err.hint ?? ''), re);
    return err;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export function storeContractTests(name: string, makeHarness: () => Promise<StoreHarness>): void {
  /** Opens one handle with its own virtual time; most tests need no more. */
  async function withStore(fn: (s: Store, vt: VirtualTime, h: StoreHarness) => Promise<void>): Promise<void> {
    const h = await makeHarness();
    const vt = new VirtualTime(undefined, h.settle);
    try {
      const s = await h.open({ clock: vt.clock, sleep: vt.sleep });
      await fn(s, vt, h);
    } finally {
      await h.cleanup();
    }
  }

  describe(`Store contract: ${name}`, () => {
    describe('apps', () => {
      it('creates, reads, lists, updates and deletes apps; secrets come back exactly', () =>
        withStore(async (s, vt) => {
          const t0 = vt.clock();
          const created = await s.createApp(sampleApp('backup', { secret: 'sëcret with ünicode 🔑 and "quotes"' }));
          assert.deepEqual(created, { ...sampleApp('backup', { secret: 'sëcret with ünicode 🔑 and "quotes"' }), createdAt: t0, updatedAt: t0 });
          assert.deepEqual(await s.getApp('backup'), created);
          await s.createApp(sampleApp('analytics', { secret: null, team: true, access: null, scopes: [] }));
          assert.deepEqual((await s.listApps()).map((a) => a.name), ['analytics', 'backup']);
          assert.equal((await s.getApp('analytics'))!.secret, null, 'PKCE-only apps have no secret');
          assert.equal((await s.getApp('analytics'))!.team, true);
          assert.equal(await s.getApp('nope'), undefined);

          vt.jump(1000);
          const updated = await s.updateApp('backup', { secret: 'rotated-secret', scopes: ['files.metadata.read'] });
          assert.equal(updated.secret, 'rotated-secret');
          assert.deepEqual(updated.scopes, ['files.metadata.read']);
          assert.equal(updated.key, 'key-backup');
          assert.equal(updated.createdAt, t0);
          assert.equal(updated.updatedAt, t0 + 1000);
          assert.deepEqual(await s.getApp('backup'), updated);
          const cleared = await s.updateApp('backup', { secret: null });
          assert.equal(cleared.secret, null);

          await s.deleteApp('analytics');
          assert.equal(await s.getApp('analytics'), undefined);
        }));

      it('refuses a duplicate app name and keeps the original', () =>
        withStore(async (s) => {
          await s.createApp(sampleApp('backup'));
          await rejectsWith(s.createApp(sampleApp('backup', { key: 'other', secret: 'other' })), ErrorCodes.ALREADY_EXISTS, /backup/);
          const kept = await s.getApp('backup');
          assert.equal(kept!.key, 'key-backup');
          assert.equal(kept!.secret, sampleApp('backup').secret);
        }));

      it('reports unknown apps as NOT_FOUND on update and delete', () =>
        withStore(async (s) => {
          await rejectsWith(s.updateApp('ghost', { key: 'x' }), ErrorCodes.NOT_FOUND, /ghost/);
          await rejectsWith(s.deleteApp('ghost'), ErrorCodes.NOT_FOUND, /ghost/);
        }));

      it('refuses to delete an app while connections use it, naming them', () =>
        withStore(async (s) => {
          await s.createApp(sampleApp('backup'));
          await s.createConnection(sampleConnection('default', 'backup'));
          await s.createConnection(sampleConnection('dropbox_default', 'backup'));
          const err = await rejectsWith(s.deleteApp('backup'), ErrorCodes.BAD_INPUT);
          assert.match(err.message, /"default"/);
          assert.match(err.message, /"dropbox_default"/);
          assert.match(err.hint ?? '', /dropkey revoke --connection default/);
          assert.ok(await s.getApp('backup'), 'the app is still there');
          await s.deleteConnection('default');
          await s.deleteConnection('dropbox_default');
          await s.deleteApp('backup');
          assert.equal(await s.getApp('backup'), undefined);
        }));
    });

    describe('connections', () => {
      it('creates and reads a connection with every field; version starts at 1', () =>
        withStore(async (s, vt) => {
          await s.createApp(sampleApp('backup'));
          const rec = sampleConnection('default', 'backup', { teamId: 'dbtid:1', teamName: 'Acme', lastError: 'none', lastRefreshAt: 5 });
          const created = await s.createConnection(rec);
          assert.deepEqual(created, { ...rec, createdAt: vt.clock(), updatedAt: vt.clock(), version: 1 });
          assert.deepEqual(await s.getConnection('default'), created);
          assert.equal(await s.getConnection('other'), undefined);
          await s.createConnection(sampleConnection('b-conn', 'backup', { accessToken: null, refreshToken: null, accessTokenExpiresAt: null, state: 'needs_reauth' }));
          assert.deepEqual((await s.listConnections()).map((c) => c.name), ['b-conn', 'default']);
          const b = await s.getConnection('b-conn');
          assert.equal(b!.accessToken, null);
          assert.equal(b!.refreshToken, null);
          assert.equal(b!.state, 'needs_reauth');
        }));

      it('refuses a duplicate connection name and a connection to an unknown app', () =>
        withStore(async (s) => {
          await s.createApp(sampleApp('backup'));
          await s.createConnection(sampleConnection('default', 'backup'));
          await rejectsWith(s.createConnection(sampleConnection('default', 'backup', { refreshToken: 'other' })), ErrorCodes.ALREADY_EXISTS, /default/);
          assert.equal((await s.getConnection('default'))!.refreshToken, sampleConnection().refreshToken);
          await rejectsWith(s.createConnection(sampleConnection('x', 'ghost')), ErrorCodes.NOT_FOUND, /ghost/);
          assert.equal(await s.getConnection('x'), undefined);
        }));

      it('updates bump the version; a stale expectedVersion is a conflict and changes nothing', () =>
        withStore(async (s, vt) => {
          await s.createApp(sampleApp('backup'));
          await s.createConnection(sampleConnection('default', 'backup'));
          vt.jump(500);
          const u1 = await s.updateConnection('default', { accessToken: 'sl.new-token', accessTokenExpiresAt: 99 }, { expectedVersion: 1 });
          assert.equal(u1.version, 2);
          assert.equal(u1.accessToken, 'sl.new-token');
          assert.equal(u1.accessTokenExpiresAt, 99);
          assert.equal(u1.refreshToken, sampleConnection().refreshToken, 'untouched fields stay');
          assert.equal(u1.updatedAt, u1.createdAt + 500);
          const err = await rejectsWith(s.updateConnection('default', { accessToken: 'sl.lost-update' }, { expectedVersion: 1 }), ErrorCodes.STORE, /changed/);
          assert.equal(err.details?.['conflict'], true);
          const now = await s.getConnection('default');
          assert.equal(now!.accessToken, 'sl.new-token');
          assert.equal(now!.version, 2);
          const u2 = await s.updateConnection('default', { state: 'needs_reauth', lastError: 'invalid_grant' });
          assert.equal(u2.version, 3);
          assert.equal(u2.state, 'needs_reauth');
          await rejectsWith(s.updateConnection('ghost', { email: null }), ErrorCodes.NOT_FOUND, /ghost/);
        }));

      it('never clears a refresh token unless explicitly allowed', () =>
        withStore(async (s) => {
          await s.createApp(sampleApp('backup'));
          await s.createConnection(sampleConnection('default', 'backup'));
          const rt = sampleConnection().refreshToken;
          await rejectsWith(s.updateConnection('default', { refreshToken: null }), ErrorCodes.BAD_INPUT, /refresh token/);
          await rejectsWith(s.updateConnection('default', { refreshToken: '', accessToken: 'sl.x' }), ErrorCodes.BAD_INPUT, /refresh token/);
          const kept = await s.getConnection('default');
          assert.equal(kept!.refreshToken, rt);
          assert.equal(kept!.accessToken, sampleConnection().accessToken, 'a refused patch changes nothing');
          assert.equal(kept!.version, 1);
          const replaced = await s.updateConnection('default', { refreshToken: 'new-refresh' });
          assert.equal(replaced.refreshToken, 'new-refresh');
          const cleared = await s.updateConnection('default', { refreshToken: null, state: 'revoked' }, { allowClearRefreshToken: true });
          assert.equal(cleared.refreshToken, null);
          assert.equal((await s.getConnection('default'))!.refreshToken, null);
        }));

      it('deletes connections; deleting an unknown one is NOT_FOUND', () =>
        withStore(async (s) => {
          await s.createApp(sampleApp('backup'));
          await s.createConnection(sampleConnection('default', 'backup'));
          await s.deleteConnection('default');
          assert.equal(await s.getConnection('default'), undefined);
          await rejectsWith(s.deleteConnection('default'), ErrorCodes.NOT_FOUND);
        }));

      it('a second handle on the same database sees writes at once and shares the version check', async () => {
        const h = await makeHarness();
        try {
          const vt = new VirtualTime(undefined, h.settle);
          const a = await h.open({ clock: vt.clock, sleep: vt.sleep });
          const b = await h.open({ clock: vt.clock, sleep: vt.sleep });
          await a.createApp(sampleApp('backup'));
          await a.createConnection(sampleConnection('default', 'backup'));
          const seen = await b.getConnection('default');
          assert.equal(seen!.refreshToken, sampleConnection().refreshToken);
          await b.updateConnection('default', { accessToken: 'sl.from-b' }, { expectedVersion: seen!.version });
          await rejectsWith(a.updateConnection('default', { accessToken: 'sl.from-a' }, { expectedVersion: seen!.version }), ErrorCodes.STORE);
          assert.equal((await a.getConnection('default'))!.accessToken, 'sl.from-b');
        } finally {
          await h.cleanup();
        }
      });
    });

    describe('locks', () => {
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
  });
}
