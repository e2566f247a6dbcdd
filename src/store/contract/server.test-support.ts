/**
 * The ServerStore contract (`dropkey serve`'s admins, sessions, API keys, audit, connect links, pending logins,
 * setup tokens), run against every driver; `a` and `b` are two instances (handles) on one database, so every
 * single-use and uniqueness rule is checked across instances. Merged from the former per-driver suites
 * (sqlite/server-store.test.ts, postgres/server-store.e2e.test.ts): every case of either runs for both.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { openDriver as openSqliteDriver } from '../sqlite/index.js';
import type { NewPendingOAuth } from '../server-types.js';
import type { Stores } from '../types.js';
import { sampleApp, sampleConnection } from './core.test-support.js';
import { withHarness, type DriverHarness, type DriverUnderTest } from './harness.test-support.js';

const T0 = 1_700_000_000_000;
const hash = (c: string) => c.repeat(64).slice(0, 64);

const pending = (over: Partial<NewPendingOAuth> = {}): NewPendingOAuth => ({
  stateHash: hash('S'),
  bindingHash: hash('B'),
  sessionIdHash: null,
  linkId: null,
  connection: 'c',
  app: 'a',
  codeVerifier: 'verifier-secret-value-1234567890',
  redirectUri: 'http://127.0.0.1:1/oauth/callback',
  scopes: ['files.content.read'],
  returnMode: 'popup',
  returnTo: null,
  actor: 'admin:x',
  expiresAt: T0 + 1000,
  ...over,
});

export function serverContractTests(d: DriverUnderTest): void {
  /** A fresh database with two instances on it. */
  const withTwo = (fn: (a: Stores, b: Stores, h: DriverHarness) => Promise<void>) =>
    withHarness(d.make, async (h) => {
      const a = await h.open({ clock: () => T0 });
      const b = await h.open({ clock: () => T0 });
      await fn(a, b, h);
    });

  describe(`ServerStore contract: ${d.name}`, { ...(d.skip ? { skip: d.skip } : {}) }, () => {
    test('lives beside the core tables without disturbing them; one migrator records every version once; concurrent opens are safe', () =>
      withHarness(d.make, async (h) => {
        const more = await Promise.all(Array.from({ length: 4 }, () => h.open()));
        for (const m of more) await m.close();
        const again = await h.open(); // idempotent
        await again.core.createApp({ name: 'a', key: 'k', secret: null, scopes: [], team: false, access: null });
        assert.equal((await again.core.listApps()).length, 1);
        assert.equal(await again.server.countAdmins(), 0);
        assert.deepEqual(await h.rows('SELECT version FROM schema_migrations ORDER BY version'), h.migrations.map((version) => ({ version })));
      }));

    test('a fresh database: 4 instances opening at once all succeed', () =>
      withHarness(d.make, async (h) => {
        const all = await Promise.all(Array.from({ length: 4 }, () => h.open()));
        for (const s of all) await s.server.ping();
      }));

    test(
      "a file that is not a database is refused with the store's own diagnosis, never overwritten",
      d.name === 'sqlite' ? {} : { skip: 'PostgreSQL has no database file: a damaged server is the driver suite\'s (postgres.e2e.test.ts)' },
      async () => {
        const dir = mkdtempSync(join(tmpdir(), 'dropkey-server-store-'));
        try {
          const path = join(dir, 'db');
          writeFileSync(path, "not a database, but someone's data ".repeat(200));
          await assert.rejects(openSqliteDriver({ location: path, keyring: (await import('../cipher.js')).Keyring.generate() }), (err: Error & { code?: string; hint?: string }) => {
            assert.equal(err.code, 'DROPKEY_STORE');
            assert.match(err.message, /is damaged or is not a dropkey database/);
            assert.match(err.hint ?? '', /restore .* from a backup/);
            return true;
          });
          assert.match(readFileSync(path, 'utf8'), /^not a database/);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );

    test('admins: unique email (case-insensitive, also across instances), lookups, password change, last login', () =>
      withTwo(async ({ server: s }, { server: other }) => {
        const a = await s.createAdmin({ email: 'Ann@Example.com', passwordHash: 'scrypt$1$1$1$x$y' }, T0);
        await assert.rejects(s.createAdmin({ email: 'ann@example.com', passwordHash: 'scrypt$x' }, T0), { code: 'DROPKEY_ALREADY_EXISTS' });
        await assert.rejects(other.createAdmin({ email: 'ann@example.com', passwordHash: 'scrypt$x' }, T0), { code: 'DROPKEY_ALREADY_EXISTS' });
        assert.equal((await other.getAdminByEmail(' ANN@example.com '))?.id, a.id);
        await s.setAdminPassword(a.id, 'scrypt$2');
        assert.equal((await s.getAdminByEmail('ann@example.com'))?.passwordHash, 'scrypt$2');
        await assert.rejects(s.setAdminPassword('nobody', 'scrypt$3'), { code: 'DROPKEY_NOT_FOUND' });
        await s.recordAdminLogin(a.id, T0 + 5);
        assert.equal((await s.getAdmin(a.id))?.lastLoginAt, T0 + 5);
        assert.equal(await s.countAdmins(), 1);
        assert.deepEqual((await s.listAdmins()).map((x) => x.email), ['Ann@Example.com']);
        // The CHECK constraint refuses anything that is not a scrypt hash (a plaintext password by mistake).
        await assert.rejects(s.createAdmin({ email: 'b@example.com', passwordHash: 'hunter2' }, T0), { code: 'DROPKEY_STORE' });
      }));

    test('sessions expire and cascade with their user', () =>
      withTwo(async ({ server: s }, { server: other }) => {
        const u = await s.createAdmin({ email: 'sess@example.com', passwordHash: 'scrypt$z' }, T0);
        await s.createSession({ idHash: hash('a'), userId: u.id, csrfToken: 'c', createdAt: T0, expiresAt: T0 + 1000 });
        assert.equal((await s.getSession(hash('a'), T0 + 999))?.userId, u.id);
        assert.equal((await other.getSession(hash('a'), T0 + 999))?.userId, u.id);
        assert.equal(await s.getSession(hash('a'), T0 + 1000), undefined);
        await s.createSession({ idHash: hash('b'), userId: u.id, csrfToken: 'c', createdAt: T0, expiresAt: T0 + 1000 });
        await s.deleteSessionsOf(u.id);
        assert.equal(await s.getSession(hash('b'), T0), undefined);
        await s.createSession({ idHash: hash('c'), userId: u.id, csrfToken: 'c', createdAt: T0, expiresAt: T0 + 1000 });
        await s.deleteSession(hash('c'));
        assert.equal(await s.getSession(hash('c'), T0), undefined);
      }));

    test("first admin: needs a valid setup token; every instance's token works until one creates the admin; one winner across instances", () =>
      withTwo(async ({ server: a }, { server: b }, h) => {
        await a.addSetupToken(hash('1'), T0 + 100, T0);
        await b.addSetupToken(hash('2'), T0 + 200, T0 + 1); // does not void a's URL
        assert.equal(await a.checkSetupToken(hash('1'), T0), true);
        assert.equal(await a.checkSetupToken(hash('2'), T0), true);
        assert.equal(await a.checkSetupToken(hash('x'), T0), false);
        assert.equal(await a.createFirstAdmin({ email: 'x@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('x') }, T0), undefined, 'unknown');
        assert.equal(await a.createFirstAdmin({ email: 'x@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('1') }, T0 + 100), undefined, 'expired');
        await a.addSetupToken(hash('3'), T0 + 300, T0 + 150); // drops the expired one
        assert.equal(await a.checkSetupToken(hash('1'), T0), false);
        const left = await h.rows('SELECT count(*) AS n FROM server_setup_tokens');
        assert.equal(Number(left[0]!['n']), 2);
        // Two instances racing with different valid tokens and different emails: exactly one admin. The harness makes
        // the race certain (PostgreSQL: both callers wait on a lock held by a third session before either can write).
        const created = await h.race('server_admins', () => [
          a.createFirstAdmin({ email: 'x@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('3') }, T0 + 150),
          b.createFirstAdmin({ email: 'y@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('2') }, T0 + 150),
        ]);
        assert.equal(created.filter((x) => x !== undefined).length, 1);
        assert.equal((await a.checkSetupToken(hash('2'), T0 + 150)) || (await a.checkSetupToken(hash('3'), T0 + 150)), false, 'the admin exists: every other token is consumed');
        await a.addSetupToken(hash('4'), T0 + 400, T0 + 150);
        assert.equal(await a.createFirstAdmin({ email: 'z@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('4') }, T0), undefined, 'an admin exists');
        assert.equal(await a.countAdmins(), 1);
      }));

    test('API keys: one live key per name (across instances), revoke frees the name, usage adds up, lookups by hash', () =>
      withTwo(async ({ server: s }, { server: other }) => {
        const k = await s.createApiKey({ name: 'svc', prefix: 'dk_abcdefgh', hash: hash('k'), permissions: ['token:read'], connections: ['a', 'b'], createdBy: 'cli' }, T0);
        assert.deepEqual(k.connections, ['a', 'b']);
        await assert.rejects(s.createApiKey({ name: 'svc', prefix: 'dk_x', hash: hash('l'), permissions: ['admin'], connections: '*', createdBy: 'cli' }, T0), { code: 'DROPKEY_ALREADY_EXISTS' });
        await assert.rejects(other.createApiKey({ name: 'svc', prefix: 'dk_x', hash: hash('l'), permissions: ['admin'], connections: '*', createdBy: 'cli' }, T0), {
          code: 'DROPKEY_ALREADY_EXISTS',
        });
        // Usage from one instance, batch by batch.
        const k2 = await s.createApiKey({ name: 'svc2', prefix: 'dk_qrstuvwx', hash: hash('n'), permissions: ['token:read'], connections: '*', createdBy: 'cli' }, T0);
        await s.recordApiKeyUsage([{ id: k2.id, lastUsedAt: T0 + 10, tokenHandouts: 3 }]);
        await s.recordApiKeyUsage([{ id: k2.id, lastUsedAt: T0 + 5, tokenHandouts: 2 }]);
        const one = await s.getApiKeyByHash(hash('n'));
        assert.equal(one?.tokenHandouts, 5);
        assert.equal(one?.lastUsedAt, T0 + 10, 'last use never goes back');
        // Usage from two instances, one batch naming the same key twice.
        await s.recordApiKeyUsage([{ id: k.id, lastUsedAt: T0 + 10, tokenHandouts: 3 }]);
        await other.recordApiKeyUsage([
          { id: k.id, lastUsedAt: T0 + 5, tokenHandouts: 2 },
          { id: k.id, lastUsedAt: T0 + 7, tokenHandouts: 1 },
        ]);
        const got = await s.getApiKeyByHash(hash('k'));
        assert.equal(got?.tokenHandouts, 6);
        assert.equal(got?.lastUsedAt, T0 + 10, 'last use never goes back');
        assert.deepEqual(got?.permissions, ['token:read']);
        const revoked = await s.revokeApiKey('svc', T0 + 20);
        assert.equal(revoked.revokedAt, T0 + 20);
        await assert.rejects(s.revokeApiKey('svc', T0), { code: 'DROPKEY_NOT_FOUND' });
        const again = await s.createApiKey({ name: 'svc', prefix: 'dk_y', hash: hash('m'), permissions: ['admin'], connections: '*', createdBy: 'cli' }, T0);
        assert.equal(again.connections, '*');
        assert.equal((await other.getApiKeyByHash(hash('m')))?.connections, '*');
        const list = await s.listApiKeys();
        assert.deepEqual(list.filter((x) => x.name === 'svc').map((x) => x.revokedAt === null), [true, false], 'live keys first');
      }));

    test('audit: newest first, filters, paging, details round-trip', () =>
      withTwo(async ({ server: s }) => {
        await s.appendAudit([
          { at: T0, actor: 'cli', action: 'x.one', target: 't1', details: { n: 1 } },
          { at: T0 + 1, actor: 'cli', action: 'x.two', target: 't2', details: {} },
          { at: T0 + 2, actor: 'cli', action: 'x.one', target: null, details: { n: 3, nested: { ok: true } } },
        ]);
        const ones = await s.listAudit({ action: 'x.one' });
        assert.deepEqual(ones.map((e) => e.details['n']), [3, 1]);
        assert.deepEqual(ones[0]!.details['nested'], { ok: true });
        assert.equal(ones[0]!.target, null);
        assert.equal(typeof ones[0]!.id, 'number');
        const page = await s.listAudit({ action: 'x.one', limit: 1 });
        assert.equal(page.length, 1);
        const next = await s.listAudit({ action: 'x.one', beforeId: page[0]!.id });
        assert.deepEqual(next.map((e) => e.details['n']), [1]);
        assert.equal((await s.listAudit({ target: 't2' }))[0]?.action, 'x.two');
      }));

    test('audit: counted entries upsert one row per bucket; retention prunes the oldest in bounded batches', () =>
      withTwo(async ({ server: s }, { server: other }) => {
        const count = (bucket: string, target: string, n: number, at = T0) => ({ bucket, at, actor: 'apikey:k', action: 'token.handout', target, count: n });
        await s.addAuditCounts([count('k|c1|0', 'c1', 3), count('k|c2|0', 'c2', 1), count('k|c1|0', 'c1', 2)]);
        await other.addAuditCounts([count('k|c1|0', 'c1', 5, T0 + 999), count('k|c1|1', 'c1', 7, T0 + 3600_000)]);
        const rows = await s.listAudit({ action: 'token.handout' });
        assert.deepEqual(
          rows.map((e) => [e.target, e.at, e.details['count']]),
          [
            ['c1', T0 + 3600_000, 7],
            ['c2', T0, 1],
            ['c1', T0, 10],
          ],
          'one row per bucket, summed across calls and instances; the row keeps its first time',
        );
        await s.appendAudit(Array.from({ length: 5 }, (_, i) => ({ at: T0 - 10_000 + i, actor: 'cli', action: 'x.old', target: null, details: {} })));
        assert.equal(await s.pruneAudit(T0, 2), 2, 'a batch is bounded');
        assert.equal(await other.pruneAudit(T0, 100), 3);
        assert.equal(await s.pruneAudit(T0, 100), 0);
        assert.deepEqual((await s.listAudit({ action: 'x.old' })).length, 0);
        assert.equal((await s.listAudit({ action: 'token.handout' })).length, 3, 'entries at or after the bound stay');
        assert.equal(await s.pruneAudit(T0 + 1, 100), 2);
        assert.deepEqual((await s.listAudit({})).map((e) => e.at), [T0 + 3600_000]);
      }));

    test('connect links: claim is atomic and single-use across instances, expired links cannot be claimed, release undoes a claim', () =>
      withTwo(async ({ server: s }, { server: other }) => {
        const l = await s.createConnectLink({ tokenHash: hash('L'), connection: 'c', app: 'a', createdBy: 'cli', expiresAt: T0 + 1000 }, T0);
        assert.equal((await s.getConnectLinkByHash(hash('L')))?.id, l.id);
        assert.equal((await other.getConnectLinkByHash(hash('L')))?.id, l.id);
        const results = await Promise.all([s.claimConnectLink(l.id, T0 + 1), other.claimConnectLink(l.id, T0 + 1), s.claimConnectLink(l.id, T0 + 1), other.claimConnectLink(l.id, T0 + 1)]);
        assert.deepEqual(results.sort(), [false, false, false, true]);
        assert.equal(await s.claimConnectLink(l.id, T0 + 2), false);
        await s.releaseConnectLink(l.id);
        assert.equal((await s.getConnectLink(l.id))?.usedAt, null);
        assert.equal(await s.claimConnectLink(l.id, T0 + 1000), false, 'expired');
        assert.deepEqual((await s.listConnectLinks(T0)).map((x) => x.id), [l.id]);
      }));

    test('pending logins: single-use across instances, expiring, code verifier encrypted at rest', () =>
      withTwo(async ({ server: s }, { server: other }, h) => {
        const p = await s.createPendingOAuth(pending(), T0);
        const raw = String((await h.rows('SELECT code_verifier_enc FROM server_pending_oauth WHERE id = $1', [p.id]))[0]!['code_verifier_enc']);
        assert.match(raw, /^dk1\./);
        assert.ok(!raw.includes('verifier-secret'));
        const [t1, t2] = await Promise.all([s.takePendingOAuth(hash('S'), T0 + 1), other.takePendingOAuth(hash('S'), T0 + 1)]);
        assert.equal([t1, t2].filter((x) => x !== undefined).length, 1, 'one callback wins');
        const taken = (t1 ?? t2)!;
        assert.equal(taken.codeVerifier, 'verifier-secret-value-1234567890');
        assert.deepEqual(taken.scopes, ['files.content.read']);
        assert.equal(taken.returnMode, 'popup');
        assert.equal(await s.takePendingOAuth(hash('S'), T0 + 1), undefined, 'single use');
        await s.createPendingOAuth({ ...taken, stateHash: hash('T') }, T0);
        assert.equal(await s.takePendingOAuth(hash('T'), T0 + 1000), undefined, 'expired');
      }));

    test('connection changes: deletes, state changes and new credentials from any instance are listed by name; refreshes and key rotation are not; pruned by age', () =>
      withTwo(async (a, b) => {
        await a.core.createApp(sampleApp('backup'));
        for (const n of ['c1', 'c2', 'c3', 'c4', 'c5']) await a.core.createConnection(sampleConnection(n, 'backup'));
        const start = await a.server.connectionChanges(null);
        assert.deepEqual(start.names, [], 'none asked for');
        assert.ok(Math.abs(start.now - Date.now()) < 60_000, 'the database clock, epoch ms');
        const since = start.now - 1;
        assert.deepEqual((await a.server.connectionChanges(since)).names, [], 'creating connections ends no cached token');
        // A refresh (new access token, new last_refresh_at) on b: not listed (the old token stays valid at Dropbox).
        await b.core.updateConnection('c1', { accessToken: 'at-new', accessTokenExpiresAt: T0 + 9, lastRefreshAt: T0 + 5, lastError: null, state: 'active' });
        await b.core.updateConnection('c1', { lastError: 'a refresh failed' });
        await a.core.reencryptSecrets();
        assert.deepEqual((await a.server.connectionChanges(since)).names, [], 'refreshes, notes and key rotation are not listed');
        await b.core.deleteConnection('c2');
        await b.core.updateConnection('c3', { state: 'needs_reauth' });
        await b.core.updateConnection('c4', { refreshToken: 'rt-from-a-new-login' });
        await b.core.updateConnection('c5', { accessToken: 'pasted-access-token' });
        const seen = await a.server.connectionChanges(since);
        assert.deepEqual([...seen.names].sort(), ['c2', 'c3', 'c4', 'c5']);
        assert.ok(seen.now >= start.now);
        assert.deepEqual((await a.server.connectionChanges(seen.now + 60_000)).names, [], 'only changes at or after since');
        assert.equal(await a.server.pruneConnectionChanges(60_000), 0, 'recent changes are kept');
        assert.equal(await b.server.pruneConnectionChanges(-60_000), 4, 'older than keepMs: deleted');
        assert.deepEqual((await a.server.connectionChanges(since)).names, []);
      }));

    test('purgeExpired removes expired sessions, pending logins, setup tokens and old links; ping works until close', () =>
      withTwo(async ({ server: s }, _b, h) => {
        await s.addSetupToken(hash('P'), T0 + 10, T0);
        await s.createPendingOAuth(pending({ stateHash: hash('U'), expiresAt: T0 + 10 }), T0);
        await s.purgeExpired(T0 + 10);
        assert.equal(await s.checkSetupToken(hash('P'), T0), false);
        const left = await h.rows('SELECT count(*) AS n FROM server_pending_oauth WHERE state_hash = $1', [hash('U')]);
        assert.equal(Number(left[0]!['n']), 0);
        await s.ping();
        const closed = await h.open();
        await closed.close();
        await assert.rejects(closed.server.ping(), { code: 'DROPKEY_INTERNAL' });
      }));
  });
}
