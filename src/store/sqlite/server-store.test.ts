import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Keyring } from '../cipher.js';
import { openStore } from '../index.js';
import type { ServerStore } from '../server-types.js';
import { openSqliteServerStore } from './server-store.js';

let dir: string;
let path: string;
let keyring: Keyring;
let s: ServerStore;
const T0 = 1_700_000_000_000;
const hash = (c: string) => c.repeat(64).slice(0, 64);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dropkey-server-store-'));
  keyring = Keyring.generate();
  // The core store creates the file and its own tables first, as `dropkey serve` does.
  const core = await openStore({ home: dir, keyring });
  path = (core as { path: string }).path;
  await core.close();
  s = await openSqliteServerStore({ path, keyring }, T0);
});
after(async () => {
  await s.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('SQLite server store', () => {
  test('shares the core database without disturbing it; migrations are idempotent', async () => {
    const again = await openSqliteServerStore({ path, keyring }, T0);
    await again.close();
    const core = await openStore({ home: dir, keyring });
    await core.createApp({ name: 'a', key: 'k', secret: null, scopes: [], team: false, access: null });
    assert.equal((await core.listApps()).length, 1);
    await core.close();
    const db = new Database(path, { readonly: true });
    const versions = db.prepare('SELECT version FROM server_migrations').all();
    db.close();
    assert.deepEqual(versions, [{ version: 1 }]);
  });

  test('a file that is not a database is refused with the store\'s own diagnosis, never overwritten', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dropkey-server-store-'));
    try {
      const path = join(dir, 'db');
      writeFileSync(path, 'not a database, but someone\'s data '.repeat(200));
      await assert.rejects(openSqliteServerStore({ path, keyring }, T0), (err: Error & { code?: string; hint?: string }) => {
        assert.equal(err.code, 'DROPKEY_STORE');
        assert.match(err.message, /is damaged or is not a dropkey database/);
        assert.match(err.hint ?? '', /restore .* from a backup/);
        return true;
      });
      assert.match(readFileSync(path, 'utf8'), /^not a database/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('admins: unique email (case-insensitive), lookups, password change, last login', async () => {
    const a = await s.createAdmin({ email: 'Ann@Example.com', passwordHash: 'scrypt$1$1$1$x$y' }, T0);
    await assert.rejects(s.createAdmin({ email: 'ann@example.com', passwordHash: 'scrypt$x' }, T0), { code: 'DROPKEY_ALREADY_EXISTS' });
    assert.equal((await s.getAdminByEmail(' ANN@example.com '))?.id, a.id);
    await s.setAdminPassword(a.id, 'scrypt$2');
    assert.equal((await s.getAdminByEmail('ann@example.com'))?.passwordHash, 'scrypt$2');
    await s.recordAdminLogin(a.id, T0 + 5);
    assert.equal((await s.getAdmin(a.id))?.lastLoginAt, T0 + 5);
    assert.equal(await s.countAdmins(), 1);
    // The CHECK constraint refuses anything that is not a scrypt hash (a plaintext password by mistake).
    await assert.rejects(s.createAdmin({ email: 'b@example.com', passwordHash: 'hunter2' }, T0), { code: 'DROPKEY_STORE' });
  });

  test('sessions expire and cascade with their user', async () => {
    const u = await s.createAdmin({ email: 'sess@example.com', passwordHash: 'scrypt$z' }, T0);
    await s.createSession({ idHash: hash('a'), userId: u.id, csrfToken: 'c', createdAt: T0, expiresAt: T0 + 1000 });
    assert.equal((await s.getSession(hash('a'), T0 + 999))?.userId, u.id);
    assert.equal(await s.getSession(hash('a'), T0 + 1000), undefined);
    await s.createSession({ idHash: hash('b'), userId: u.id, csrfToken: 'c', createdAt: T0, expiresAt: T0 + 1000 });
    await s.deleteSessionsOf(u.id);
    assert.equal(await s.getSession(hash('b'), T0), undefined);
  });

  test('first admin: needs a valid setup token; every instance\'s token works until one creates the admin', async () => {
    const fresh = mkdtempSync(join(tmpdir(), 'dropkey-server-store-'));
    try {
      const st = await openSqliteServerStore({ path: join(fresh, 'db'), keyring }, T0);
      const other = await openSqliteServerStore({ path: join(fresh, 'db'), keyring }, T0); // a second instance
      await st.addSetupToken(hash('1'), T0 + 100, T0);
      await other.addSetupToken(hash('2'), T0 + 200, T0 + 1); // does not void the first instance's URL
      assert.equal(await st.checkSetupToken(hash('1'), T0), true);
      assert.equal(await st.checkSetupToken(hash('2'), T0), true);
      assert.equal(await st.checkSetupToken(hash('x'), T0), false);
      assert.equal(await st.createFirstAdmin({ email: 'x@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('x') }, T0), undefined, 'unknown');
      assert.equal(await st.createFirstAdmin({ email: 'x@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('1') }, T0 + 100), undefined, 'expired');
      await st.addSetupToken(hash('3'), T0 + 300, T0 + 150); // drops the expired one
      assert.equal(await st.checkSetupToken(hash('1'), T0), false);
      const a = await other.createFirstAdmin({ email: 'x@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('3') }, T0 + 150);
      assert.equal(a?.email, 'x@example.com');
      assert.equal(await st.checkSetupToken(hash('2'), T0 + 150), false, 'the admin exists: every other token is consumed');
      await other.close();
      await st.addSetupToken(hash('4'), T0 + 400, T0 + 150);
      assert.equal(await st.createFirstAdmin({ email: 'y@example.com', passwordHash: 'scrypt$a', setupTokenHash: hash('4') }, T0), undefined, 'an admin exists');
      assert.equal(await st.countAdmins(), 1);
      await st.close();
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  test('API keys: one live key per name, revoke frees the name, usage adds up, lookups by hash', async () => {
    const k = await s.createApiKey({ name: 'svc', prefix: 'dk_abcdefgh', hash: hash('k'), permissions: ['token:read'], connections: ['a', 'b'], createdBy: 'cli' }, T0);
    assert.deepEqual(k.connections, ['a', 'b']);
    await assert.rejects(s.createApiKey({ name: 'svc', prefix: 'dk_x', hash: hash('l'), permissions: ['admin'], connections: '*', createdBy: 'cli' }, T0), { code: 'DROPKEY_ALREADY_EXISTS' });
    await s.recordApiKeyUsage([{ id: k.id, lastUsedAt: T0 + 10, tokenHandouts: 3 }]);
    await s.recordApiKeyUsage([{ id: k.id, lastUsedAt: T0 + 5, tokenHandouts: 2 }]);
    const got = await s.getApiKeyByHash(hash('k'));
    assert.equal(got?.tokenHandouts, 5);
    assert.equal(got?.lastUsedAt, T0 + 10, 'last use never goes back');
    const revoked = await s.revokeApiKey('svc', T0 + 20);
    assert.equal(revoked.revokedAt, T0 + 20);
    await assert.rejects(s.revokeApiKey('svc', T0), { code: 'DROPKEY_NOT_FOUND' });
    const again = await s.createApiKey({ name: 'svc', prefix: 'dk_y', hash: hash('m'), permissions: ['admin'], connections: '*', createdBy: 'cli' }, T0);
    assert.equal(again.connections, '*');
    const list = await s.listApiKeys();
    assert.deepEqual(list.filter((x) => x.name === 'svc').map((x) => x.revokedAt === null), [true, false], 'live keys first');
  });

  test('audit: newest first, filters, paging, details round-trip', async () => {
    await s.appendAudit([
      { at: T0, actor: 'cli', action: 'x.one', target: 't1', details: { n: 1 } },
      { at: T0 + 1, actor: 'cli', action: 'x.two', target: 't2', details: {} },
      { at: T0 + 2, actor: 'cli', action: 'x.one', target: 't1', details: { n: 3 } },
    ]);
    const ones = await s.listAudit({ action: 'x.one' });
    assert.deepEqual(ones.map((e) => e.details['n']), [3, 1]);
    const page = await s.listAudit({ action: 'x.one', limit: 1 });
    assert.equal(page.length, 1);
    const next = await s.listAudit({ action: 'x.one', beforeId: page[0]!.id });
    assert.deepEqual(next.map((e) => e.details['n']), [1]);
    assert.equal((await s.listAudit({ target: 't2' }))[0]?.action, 'x.two');
  });

  test('connect links: claim is atomic and single-use, expired links cannot be claimed, release undoes a claim', async () => {
    const l = await s.createConnectLink({ tokenHash: hash('L'), connection: 'c', app: 'a', createdBy: 'cli', expiresAt: T0 + 1000 }, T0);
    assert.equal((await s.getConnectLinkByHash(hash('L')))?.id, l.id);
    const results = await Promise.all([s.claimConnectLink(l.id, T0 + 1), s.claimConnectLink(l.id, T0 + 1)]);
    assert.deepEqual(results.sort(), [false, true]);
    await s.releaseConnectLink(l.id);
    assert.equal((await s.getConnectLink(l.id))?.usedAt, null);
    assert.equal(await s.claimConnectLink(l.id, T0 + 1000), false, 'expired');
    assert.deepEqual((await s.listConnectLinks(T0)).map((x) => x.id), [l.id]);
  });

  test('pending logins: single-use, expiring, code verifier encrypted at rest', async () => {
    const p = await s.createPendingOAuth(
      {
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
      },
      T0,
    );
    const db = new Database(path, { readonly: true });
    const raw = db.prepare('SELECT code_verifier_enc FROM server_pending_oauth WHERE id = ?').get(p.id) as { code_verifier_enc: string };
    db.close();
    assert.match(raw.code_verifier_enc, /^dk1\./);
    assert.ok(!raw.code_verifier_enc.includes('verifier-secret'));
    const taken = await s.takePendingOAuth(hash('S'), T0 + 1);
    assert.equal(taken?.codeVerifier, 'verifier-secret-value-1234567890');
    assert.deepEqual(taken?.scopes, ['files.content.read']);
    assert.equal(taken?.returnMode, 'popup');
    assert.equal(await s.takePendingOAuth(hash('S'), T0 + 1), undefined, 'single use');
    await s.createPendingOAuth({ ...taken!, stateHash: hash('T') }, T0);
    assert.equal(await s.takePendingOAuth(hash('T'), T0 + 1000), undefined, 'expired');
  });

  test('purgeExpired removes expired sessions, pending logins and setup tokens; ping works until close', async () => {
    await s.addSetupToken(hash('P'), T0 + 10, T0);
    await s.purgeExpired(T0 + 10);
    assert.equal(await s.checkSetupToken(hash('P'), T0), false);
    await s.ping();
    const other = await openSqliteServerStore({ path, keyring }, T0);
    await other.close();
    await assert.rejects(other.ping(), { code: 'DROPKEY_INTERNAL' });
  });
});
