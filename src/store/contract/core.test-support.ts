/**
 * The core Store contract (apps and connections): one suite every driver runs (../sqlite/contract.test.ts,
 * ../postgres/contract.e2e.test.ts). A harness opens any number of handles on ONE fresh database, the way separate
 * processes or instances would. The locks have their own contract (./locks.test-support.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DropkeyError, ErrorCodes, type ErrorCode } from '../../errors.js';
import type { AppRecord, Clock, ConnectionRecord, Sleep, Store, Stores } from '../types.js';
import type { MakeHarness } from './harness.test-support.js';
import { FrozenSleep, VirtualTime } from './virtual-time.test-support.js';

/** One fresh database: open() gives another handle on it (as another process would) with the given clock and sleep. */
export interface Harness<T> {
  open(options: { clock: Clock; sleep: Sleep }): Promise<T>;
  /** Closes what open() opened and deletes the database. */
  cleanup(): Promise<void>;
  /** How VirtualTime lets woken tasks run; drivers with network I/O supply their own. */
  settle?: () => Promise<void>;
}

export type StoreHarness = Harness<Store>;

/** A Harness of one store of a driver harness (`pick` chooses it from the Stores of each handle). */
export function harnessOf<T>(make: MakeHarness, pick: (s: Stores) => T): () => Promise<Harness<T>> {
  return async () => {
    const h = await make();
    return { open: async (o) => pick(await h.open(o)), cleanup: () => h.cleanup(), ...(h.settle ? { settle: h.settle } : {}) };
  };
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
  linkedByName: null,
  linkedByEmail: null,
  scopes: ['files.content.read'],
  accessToken: `sl.access-${name}-${'A'.repeat(40)}`,
  accessTokenExpiresAt: Date.UTC(2026, 0, 1, 4),
  refreshToken: `refresh-${name}-${'R'.repeat(30)}`,
  state: 'active',
  lastError: null,
  lastRefreshAt: null,
  ...over,
});

export async function rejectsWith(p: Promise<unknown>, code: ErrorCode, re?: RegExp): Promise<DropkeyError> {
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

export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Opens one handle with its own virtual time (most tests need no more), and cleans the harness up afterwards. */
export async function withOne<T>(makeHarness: () => Promise<Harness<T>>, fn: (s: T, vt: VirtualTime, h: Harness<T>) => Promise<void>): Promise<void> {
  const h = await makeHarness();
  const vt = new VirtualTime(undefined, h.settle);
  try {
    const s = await h.open({ clock: vt.clock, sleep: vt.sleep });
    await fn(s, vt, h);
  } finally {
    await h.cleanup();
  }
}

export function storeContractTests(name: string, makeHarness: () => Promise<StoreHarness>): void {
  const withStore = (fn: (s: Store, vt: VirtualTime, h: StoreHarness) => Promise<void>) => withOne(makeHarness, fn);

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
          // The fix the CLI renders as "dropkey revoke --connection default; ..." (src/cli/fix.ts).
          assert.deepEqual(err.fix, { action: 'revoke', connections: ['default', 'dropbox_default'] });
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

      it('keeps who linked a team app; a record written without it reads as unknown, and a patch changes it', () =>
        withStore(async (s) => {
          await s.createApp(sampleApp('team', { team: true }));
          const { linkedByName: _n, linkedByEmail: _e, ...older } = sampleConnection('old', 'team');
          assert.equal((await s.createConnection(older)).linkedByName, null, 'an input without the field stores unknown');
          const rec = await s.createConnection(sampleConnection('acme', 'team', { teamId: 'dbtid:1', teamName: 'Acme', linkedByName: 'Ada Admin', linkedByEmail: 'ada@acme.example' }));
          assert.deepEqual([rec.linkedByName, rec.linkedByEmail], ['Ada Admin', 'ada@acme.example']);
          const listed = (await s.listConnections()).find((c) => c.name === 'acme')!;
          assert.deepEqual([listed.linkedByName, listed.linkedByEmail], ['Ada Admin', 'ada@acme.example']);
          const other = await s.updateConnection('acme', { linkedByName: 'Bo Boss', linkedByEmail: null });
          assert.deepEqual([other.linkedByName, other.linkedByEmail], ['Bo Boss', null]);
          const untouched = await s.updateConnection('acme', { lastError: 'x' });
          assert.equal(untouched.linkedByName, 'Bo Boss', 'a patch without the field keeps it');
        }));

      it('due and active summaries: only what is due, soonest first, paged by name, no secret in them', () =>
        withStore(async (s) => {
          await s.createApp(sampleApp('backup'));
          const at = (m: number) => Date.UTC(2026, 0, 1) + m * 60_000;
          await s.createConnection(sampleConnection('c-late', 'backup', { accessTokenExpiresAt: at(30) }));
          await s.createConnection(sampleConnection('a-soon', 'backup', { accessTokenExpiresAt: at(5) }));
          await s.createConnection(sampleConnection('b-expired', 'backup', { accessTokenExpiresAt: at(-5) }));
          await s.createConnection(sampleConnection('d-same', 'backup', { accessTokenExpiresAt: at(5) }));
          await s.createConnection(sampleConnection('e-long-lived', 'backup', { accessTokenExpiresAt: null }));
          await s.createConnection(sampleConnection('f-no-refresh', 'backup', { refreshToken: null, accessTokenExpiresAt: at(1) }));
          await s.createConnection(sampleConnection('g-broken', 'backup', { state: 'needs_reauth', accessTokenExpiresAt: at(1) }));
          const due = await s.listDueConnections(at(10), 100);
          assert.deepEqual(due.map((c) => c.name), ['b-expired', 'a-soon', 'd-same'], 'active, refreshable, expiring by the bound, soonest first');
          assert.deepEqual(due[1], {
            name: 'a-soon',
            app: 'backup',
            accountId: sampleConnection().accountId,
            email: sampleConnection().email,
            state: 'active',
            expiresAt: at(5),
            refreshable: true,
            hasAccessToken: true,
          });
          assert.deepEqual((await s.listDueConnections(at(10), 2)).map((c) => c.name), ['b-expired', 'a-soon'], 'limit');
          assert.deepEqual((await s.listDueConnections(at(-6), 10)).map((c) => c.name), []);
          assert.deepEqual((await s.listDueConnections(at(5), 10)).map((c) => c.name), ['b-expired', 'a-soon', 'd-same'], 'the bound is inclusive');
          const page1 = await s.listActiveConnections(null, 3);
          assert.deepEqual(page1.map((c) => c.name), ['a-soon', 'b-expired', 'c-late']);
          const page2 = await s.listActiveConnections(page1.at(-1)!.name, 3);
          assert.deepEqual(page2.map((c) => c.name), ['d-same', 'e-long-lived', 'f-no-refresh'], 'needs_reauth is not active');
          assert.deepEqual(await s.listActiveConnections('f-no-refresh', 3), []);
          assert.deepEqual([page2[1]!.expiresAt, page2[2]!.refreshable, page2[2]!.hasAccessToken], [null, false, true]);
          await s.updateConnection('a-soon', { accessTokenExpiresAt: at(60) });
          assert.deepEqual((await s.listDueConnections(at(10), 100)).map((c) => c.name), ['b-expired', 'd-same'], 'a refresh takes it off the due list');
          const text = JSON.stringify([...(await s.listActiveConnections(null, 100)), ...due]);
          assert.ok(!text.includes('sl.access') && !text.includes('refresh-'), 'no token in a summary');
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

      it('pages connections by name with a cursor, searches name, account and team, filters by state, never returns tokens', () =>
        withStore(async (s) => {
          await s.createApp(sampleApp('backup'));
          const names = Array.from({ length: 25 }, (_, i) => `conn-${String(i).padStart(2, '0')}`);
          for (const [i, n] of names.entries()) {
            await s.createConnection(
              sampleConnection(n, 'backup', {
                email: `user${i}@example.com`,
                accountId: `dbid:acct-${i}`,
                teamName: i % 5 === 0 ? 'Acme 50%_Off' : null,
                teamId: i % 5 === 0 ? 'dbtid:acme' : null,
                state: i % 4 === 0 ? 'needs_reauth' : 'active',
                refreshToken: i === 3 ? null : `refresh-${i}-${'R'.repeat(30)}`,
              }),
            );
          }
          // Keyset paging walks every row once, in name order.
          const seen: string[] = [];
          let after: string | undefined;
          let pages = 0;
          for (;;) {
            const page = await s.listConnectionPage({ limit: 10, ...(after === undefined ? {} : { after }) });
            pages++;
            seen.push(...page.connections.map((c) => c.name));
            if (page.next === null) break;
            assert.equal(page.next, page.connections.at(-1)!.name);
            after = page.next;
          }
          assert.deepEqual(seen, names);
          assert.equal(pages, 3);
          const exact = await s.listConnectionPage({ limit: 25 });
          assert.equal(exact.connections.length, 25);
          assert.equal(exact.next, null, 'a page that holds the rest has no next cursor');

          const first = (await s.listConnectionPage({ limit: 1 })).connections[0]!;
          assert.ok(!('accessToken' in first) && !('refreshToken' in first), 'no token in a listing');
          assert.equal(first.refreshable, true);
          assert.equal(first.email, 'user0@example.com');
          assert.deepEqual(first.scopes, ['files.content.read']);
          assert.equal((await s.listConnectionPage({ limit: 5, search: 'conn-03' })).connections[0]!.refreshable, false);

          const by = async (q: Parameters<Store['listConnectionPage']>[0]) => (await s.listConnectionPage(q)).connections.map((c) => c.name);
          assert.deepEqual(await by({ limit: 50, search: 'USER12@' }), ['conn-12'], 'email, case-insensitive');
          assert.deepEqual(await by({ limit: 50, search: 'acct-7' }), ['conn-07'], 'account id');
          assert.deepEqual(await by({ limit: 50, search: 'acme' }), ['conn-00', 'conn-05', 'conn-10', 'conn-15', 'conn-20'], 'team name');
          assert.deepEqual(await by({ limit: 50, search: '50%_' }), ['conn-00', 'conn-05', 'conn-10', 'conn-15', 'conn-20'], '% and _ match themselves');
          assert.deepEqual(await by({ limit: 50, search: '%' }).then((l) => l.length), 5, 'a lone % is not a wildcard');
          assert.deepEqual(await by({ limit: 50, search: 'conn-1' }), names.slice(10, 20), 'name');
          assert.deepEqual(await by({ limit: 50, state: 'needs_reauth' }), ['conn-00', 'conn-04', 'conn-08', 'conn-12', 'conn-16', 'conn-20', 'conn-24']);
          assert.deepEqual(await by({ limit: 50, state: 'needs_reauth', search: 'acme' }), ['conn-00', 'conn-20']);
          assert.deepEqual(await by({ limit: 50, state: 'revoked' }), []);
          assert.deepEqual(await by({ limit: 2, state: 'needs_reauth', after: 'conn-04' }), ['conn-08', 'conn-12']);
          assert.deepEqual(await by({ limit: 50, names: ['conn-02', 'conn-17', 'ghost'] }), ['conn-02', 'conn-17'], 'scoped to some names');
          assert.deepEqual(await by({ limit: 50, names: [] }), []);
          await s.createApp(sampleApp('other'));
          await s.createConnection(sampleConnection('conn-05b', 'other'));
          await s.createConnection(sampleConnection('aaa-other', 'other'));
          assert.deepEqual(await by({ limit: 50, app: 'other' }), ['aaa-other', 'conn-05b'], "one app's connections");
          assert.deepEqual(await by({ limit: 1, app: 'other', after: 'aaa-other' }), ['conn-05b']);
          assert.deepEqual(await by({ limit: 50, app: 'backup', search: 'conn-05' }), ['conn-05'], 'app and search together');
          assert.deepEqual(await by({ limit: 50, app: 'nosuch' }), []);
          assert.deepEqual(await by({ limit: 50, search: 'nobody-matches' }), []);

          await rejectsWith(s.listConnectionPage({ limit: 0 }), ErrorCodes.BAD_INPUT, /limit/);
          await rejectsWith(s.listConnectionPage({ limit: 1001 }), ErrorCodes.BAD_INPUT, /limit/);
          await rejectsWith(s.listConnectionPage({ limit: 5, search: 'x'.repeat(201) }), ErrorCodes.BAD_INPUT, /search/);
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
  });
}
