/**
 * The token API's cache (src/server/services/tokens.ts): a token is read from the store and decrypted about once per
 * lifetime, and what other processes and instances change reaches it through the store's change log within
 * tokenCacheMs: a delete (revoke) or a state change stops the hand-outs, a refresh made elsewhere does not (the token
 * it replaced stays valid at Dropbox). While the change log cannot be read, cached tokens flow for the outage grace,
 * then not from memory.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { makeServerRig, type ServerRig } from './rig.js';

let rig: ServerRig;
let key: string;
let reads: string[] = [];

before(async () => {
  rig = await makeServerRig();
  for (const n of ['life', 'deleted', 'broken', 'refreshed', 'outage', 'countdown']) await rig.connection(n);
  key = await rig.key(['token:read'], '*');
  // Every store read of a connection, wherever it comes from (the facade, the refresher).
  const original = rig.store.getConnection.bind(rig.store);
  rig.store.getConnection = (name: string) => {
    reads.push(name);
    return original(name);
  };
});
after(() => rig.close());

const bound = () => rig.app.services.config.tokenCacheMs;

async function token(name: string): Promise<{ status: number; token?: string; code?: string }> {
  const res = await rig.call('GET', `/api/v1/connections/${name}/token`, { key });
  const body = (await res.json()) as { access_token?: string; error?: { code: string } };
  return { status: res.status, ...(body.access_token ? { token: body.access_token } : {}), ...(body.error ? { code: body.error.code } : {}) };
}

describe('token cache', () => {
  test('expires_in counts down with the clock while the token comes from memory; the rest of the body stays the same', async (t) => {
    const t0 = rig.clock.now;
    t.after(() => {
      rig.clock.now = t0;
    });
    const body = async () => {
      const res = await rig.call('GET', '/api/v1/connections/countdown/token', { key });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.equal(Number(res.headers.get('content-length') ?? Buffer.byteLength(text)), Buffer.byteLength(text), 'Content-Length matches the body');
      return JSON.parse(text) as Record<string, unknown>;
    };
    const first = await body();
    const expiresAt = Date.parse(first.expires_at as string);
    reads = [];
    for (const ms of [999, 1, 60_000, 3_600_000 - 1]) {
      rig.clock.now += ms;
      const now = await body();
      assert.equal(now.expires_in, Math.floor((expiresAt - rig.clock.now) / 1000), `expires_in after ${rig.clock.now - t0} ms`);
      assert.deepEqual({ ...now, expires_in: 0 }, { ...first, expires_in: 0 });
    }
    assert.deepEqual(reads, [], 'all from memory');
  });

  test('a token is read from the store once and served from memory until only the refresh margin is left', async (t) => {
    const t0 = rig.clock.now;
    t.after(() => {
      rig.clock.now = t0; // the other cases' tokens were minted at t0 (the emulator's clock did not move)
    });
    const first = await token('life');
    assert.equal(first.status, 200);
    reads = [];
    for (const minutes of [1, 29, 60, 90]) {
      rig.clock.now += minutes * 60_000;
      assert.deepEqual(await token('life'), first, `after ${minutes} more minutes`);
    }
    assert.equal(reads.length, 0, 'no store read for hours: the change log was read instead');
    const info = await rig.dk.get('life');
    rig.clock.now = info.expiresAt! - rig.dk.refreshMarginSeconds * 1000 + 1;
    const renewed = await token('life');
    assert.equal(renewed.status, 200);
    assert.ok(reads.includes('life'), 'inside the margin the facade is asked (and refreshes)');
    assert.notEqual(renewed.token, first.token);
  });

  test('a connection deleted by another process gets no token from memory after tokenCacheMs', async () => {
    assert.equal((await token('deleted')).status, 200);
    await rig.store.deleteConnection('deleted'); // not through this server: only the change log tells it
    rig.clock.now += bound();
    const r = await token('deleted');
    assert.equal(r.status, 404, JSON.stringify(r));
  });

  test('a connection marked needs_reauth by another process is refused after tokenCacheMs', async () => {
    assert.equal((await token('broken')).status, 200);
    await rig.store.updateConnection('broken', { state: 'needs_reauth', lastError: 'elsewhere' });
    rig.clock.now += bound();
    const r = await token('broken');
    assert.equal(r.status, 409, JSON.stringify(r));
    assert.equal(r.code, 'DROPKEY_REAUTH_REQUIRED');
  });

  test('a refresh made by another process leaves the cached token in use: it stays valid at Dropbox', async () => {
    const before = await token('refreshed');
    await rig.dk.refresh('refreshed', { force: true }); // the facade directly: this server's cache is not told
    const stored = await rig.store.getConnection('refreshed');
    assert.notEqual(stored?.accessToken, before.token, 'the store holds a new token');
    reads = [];
    rig.clock.now += 10 * bound();
    assert.deepEqual(await token('refreshed'), before, 'the cached one is still handed out');
    assert.deepEqual(reads, []);
    const check = await fetch(`${rig.emu.url}/2/check/user`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${before.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ query: 'x' }),
    });
    assert.equal(check.status, 200, 'the emulator still accepts the old token');
  });

  test('while the change log cannot be read, cached tokens are served for the outage grace, then read again', async () => {
    const first = await token('outage');
    const ss = rig.serverStore;
    const original = ss.connectionChanges.bind(ss);
    ss.connectionChanges = async () => {
      throw new Error('database unreachable');
    };
    try {
      reads = [];
      rig.clock.now += 60_000;
      assert.deepEqual(await token('outage'), first);
      rig.clock.now += 60_000;
      assert.deepEqual(await token('outage'), first);
      assert.deepEqual(reads, [], 'served from memory during the grace');
      rig.clock.now += rig.app.services.config.storeOutageGraceMs;
      assert.equal((await token('outage')).status, 200);
      assert.deepEqual(reads, ['outage'], 'past the grace: memory is not trusted, the store is read');
    } finally {
      ss.connectionChanges = original;
    }
  });
});
