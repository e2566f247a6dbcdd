/**
 * The PostgreSQL ServerStore: the same cases as the SQLite one (../sqlite/server-store.test.ts), plus races between
 * two instances on one schema (single-use links and logins, the first admin, the setup token).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Keyring } from '../cipher.js';
import type { NewPendingOAuth } from '../server-types.js';
import { openPostgresStore } from './index.js';
import { openPostgresServerStore, serverMigrations, type PostgresServerStore } from './server-store.js';
import { dropSchema, freshSchemaName, SKIP_REASON, TEST_DATABASE_URL, withAdmin } from './test-helpers.js';

const T0 = 1_700_000_000_000;
const hash = (c: string) => c.repeat(64).slice(0, 64);

if (!TEST_DATABASE_URL) {
  test('PostgreSQL server store', { skip: SKIP_REASON }, () => {});
} else {
  tests(TEST_DATABASE_URL);
}

function tests(url: string): void {
  const schema = freshSchemaName();
  const keyring = Keyring.generate();
  let s: PostgresServerStore;
  let other: PostgresServerStore;

  before(async () => {
    // The core store creates the schema and its own tables first, as `dropkey serve` does.
    await (await openPostgresStore({ connectionString: url, keyring, schema })).close();
    s = await openPostgresServerStore({ connectionString: url, keyring, schema }, T0);
    other = await openPostgresServerStore({ connectionString: url, keyring, schema }, T0); // a second instance
  });
  after(async () => {
    await s.close();
    await other.close();
    await dropSchema(schema);
  });

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

  describe('PostgreSQL server store', () => {
    test('shares the core schema without disturbing it; migrations recorded once; concurrent opens are safe', async () => {
      const more = await Promise.all(Array.from({ length: 4 }, () => openPostgresServerStore({ connectionString: url, keyring, schema }, T0)));
      for (const m of more) await m.close();
      const core = await openPostgresStore({ connectionString: url, keyring, schema });
      await core.createApp({ name: 'a', key: 'k', secret: null, scopes: [], team: false, access: null });
      assert.equal((await core.listApps()).length, 1);
      await core.close();
      const versions = await withAdmin((c) => c.query(`SELECT version FROM "${schema}".server_migrations ORDER BY version`));
      assert.deepEqual(versions.rows, serverMigrations.map((m) => ({ version: m.version })));
    });

    test('a fresh schema: 4 server stores opening at once all succeed', async () => {
      const fresh = freshSchemaName();
      try {
        const all = await Promise.all(Array.from({ length: 4 }, () => openPostgresServerStore({ connectionString: url, keyring, schema: fresh }, T0)));
        for (const m of all) await m.close();
      } finally {
        await dropSchema(fresh);
      }
    });

    test('admins: unique email (case-insensitive, also across instances), lookups, password change, last login', async () => {
      const a = await s.createAdmin({ email: 'Ann@Example.com', passwordHash: 'scrypt$1$1$1$x$y' }, T0);
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
    });

    test('sessions expire and cascade with their user', async () => {
      const u = await s.createAdmin({ email: 'sess@example.com', passwordHash: 'scrypt$z' }, T0);
      await s.createSession({ idHash: hash('a'), userId: u.id, csrfToken: 'c', createdAt: T0, expiresAt: T0 + 1000 });
      assert.equal((await other.getSession(hash('a'), T0 + 999))?.userId, u.id);
      assert.equal(await s.getSession(hash('a'), T0 + 1000), undefined);
      await s.createSession({ idHash: hash('b'), userId: u.id, csrfToken: 'c', createdAt: T0, expiresAt: T0 + 1000 });
      await s.deleteSessionsOf(u.id);
      assert.equal(await s.getSession(hash('b'), T0), undefined);
      await s.createSession({ idHash: hash('c'), userId: u.id, csrfToken: 'c', createdAt: T0, expiresAt: T0 + 1000 });
      await s.deleteSession(hash('c'));
      assert.equal(await s.getSession(hash('c'), T0), undefined);
    });

    test('first admin: every instance\'s setup token works until one creates the admin; one winner across instances', async () => {
      const fresh = freshSchemaName();
      const a = await openPostgresServerStore({ connectionString: url, keyring, schema: fresh }, T0);
      const b = await openPostgresServerStore({ connectionString: url, keyring, schema: fresh }, T0);
      try {
        await a.addSetupToken(hash('1'), T0 + 100, T0);
        await b.addSetupToken(hash('2'), T0 + 200, T0 + 1); // does not void a's URL
        assert.equal(await a.checkSetupToken(hash('1'), T0), true);
        assert.equal(await a.checkSetupToken(hash('2'), T0), true);
        assert.equal(await a.createFirstAdmin({ email: 'x@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('x') }, T0), undefined, 'unknown');
        assert.equal(await a.createFirstAdmin({ email: 'x@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('1') }, T0 + 100), undefined, 'expired');
        await a.addSetupToken(hash('3'), T0 + 300, T0 + 150); // drops the expired one
        const left = await withAdmin((c) => c.query(`SELECT count(*)::int AS n FROM "${fresh}".server_setup_tokens`));
        assert.equal(left.rows[0].n, 2);
        // Two instances racing with different valid tokens and different emails: exactly one admin. The race is made
        // certain: a third session blocks inserts into the admins table until both callers are waiting on a lock
        // (without serialization both would have counted no admin and consumed their own token by then).
        const created = await withAdmin(async (c) => {
          await c.query('BEGIN');
          await c.query(`LOCK TABLE "${fresh}".server_admins IN EXCLUSIVE MODE`);
          const racing = Promise.all([
            a.createFirstAdmin({ email: 'x@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('3') }, T0 + 150),
            b.createFirstAdmin({ email: 'y@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('2') }, T0 + 150),
          ]);
          for (let waiting = 0; waiting < 2; ) {
            await c.query('SELECT pg_stat_clear_snapshot()'); // pg_stat_activity is read once per transaction otherwise
            const r = await c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`, [`%"${fresh}"%`]);
            waiting = r.rows[0].n;
          }
          await c.query('COMMIT');
          return racing;
        });
        assert.equal(created.filter((x) => x !== undefined).length, 1);
        assert.equal(await a.checkSetupToken(hash('2'), T0 + 150) || (await a.checkSetupToken(hash('3'), T0 + 150)), false, 'every token consumed');
        await a.addSetupToken(hash('4'), T0 + 400, T0 + 150);
        assert.equal(await a.createFirstAdmin({ email: 'z@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('4') }, T0), undefined, 'an admin exists');
        assert.equal(await a.countAdmins(), 1);
      } finally {
        await a.close();
        await b.close();
        await dropSchema(fresh);
      }
    });

    test('API keys: one live key per name, revoke frees the name, usage adds up, lookups by hash', async () => {
      const k = await s.createApiKey({ name: 'svc', prefix: 'dk_abcdefgh', hash: hash('k'), permissions: ['token:read'], connections: ['a', 'b'], createdBy: 'cli' }, T0);
      assert.deepEqual(k.connections, ['a', 'b']);
      await assert.rejects(other.createApiKey({ name: 'svc', prefix: 'dk_x', hash: hash('l'), permissions: ['admin'], connections: '*', createdBy: 'cli' }, T0), {
        code: 'DROPKEY_ALREADY_EXISTS',
      });
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
    });

    test('audit: newest first, filters, paging, details round-trip', async () => {
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
    });

    test('connect links: claim is atomic and single-use across instances, expired links cannot be claimed, release undoes a claim', async () => {
      const l = await s.createConnectLink({ tokenHash: hash('L'), connection: 'c', app: 'a', createdBy: 'cli', expiresAt: T0 + 1000 }, T0);
      assert.equal((await other.getConnectLinkByHash(hash('L')))?.id, l.id);
      const results = await Promise.all([s.claimConnectLink(l.id, T0 + 1), other.claimConnectLink(l.id, T0 + 1), s.claimConnectLink(l.id, T0 + 1), other.claimConnectLink(l.id, T0 + 1)]);
      assert.deepEqual(results.sort(), [false, false, false, true]);
      assert.equal(await s.claimConnectLink(l.id, T0 + 2), false);
      await s.releaseConnectLink(l.id);
      assert.equal((await s.getConnectLink(l.id))?.usedAt, null);
      assert.equal(await s.claimConnectLink(l.id, T0 + 1000), false, 'expired');
      assert.deepEqual((await s.listConnectLinks(T0)).map((x) => x.id), [l.id]);
    });

    test('pending logins: single-use across instances, expiring, code verifier encrypted at rest', async () => {
      const p = await s.createPendingOAuth(pending(), T0);
      const raw = await withAdmin((c) => c.query(`SELECT code_verifier_enc FROM "${schema}".server_pending_oauth WHERE id = $1`, [p.id]));
      assert.match(raw.rows[0].code_verifier_enc, /^dk1\./);
      assert.ok(!raw.rows[0].code_verifier_enc.includes('verifier-secret'));
      const [t1, t2] = await Promise.all([s.takePendingOAuth(hash('S'), T0 + 1), other.takePendingOAuth(hash('S'), T0 + 1)]);
      assert.equal([t1, t2].filter((x) => x !== undefined).length, 1, 'one callback wins');
      const taken = (t1 ?? t2)!;
      assert.equal(taken.codeVerifier, 'verifier-secret-value-1234567890');
      assert.deepEqual(taken.scopes, ['files.content.read']);
      assert.equal(taken.returnMode, 'popup');
      assert.equal(await s.takePendingOAuth(hash('S'), T0 + 1), undefined, 'single use');
      await s.createPendingOAuth({ ...taken, stateHash: hash('T') }, T0);
      assert.equal(await s.takePendingOAuth(hash('T'), T0 + 1000), undefined, 'expired');
    });

    test('purgeExpired removes expired sessions, pending logins, setup tokens and old links; ping works until close', async () => {
      await s.addSetupToken(hash('P'), T0 + 10, T0);
      await s.createPendingOAuth(pending({ stateHash: hash('U'), expiresAt: T0 + 10 }), T0);
      await s.purgeExpired(T0 + 10);
      assert.equal(await s.checkSetupToken(hash('P'), T0), false);
      const left = await withAdmin((c) => c.query(`SELECT count(*)::int AS n FROM "${schema}".server_pending_oauth WHERE state_hash = $1`, [hash('U')]));
      assert.equal(left.rows[0].n, 0);
      await s.ping();
      const closed = await openPostgresServerStore({ connectionString: url, keyring, schema }, T0);
      await closed.close();
      await assert.rejects(closed.ping(), { code: 'DROPKEY_INTERNAL' });
    });
  });
}
