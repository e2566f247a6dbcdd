/**
 * The token fast path in front of hono (src/server/api/token-fast-path.ts), through a real
 * node listener: it answers only what hono would answer with 200, with the same bytes, the same counters, audit
 * rows and log lines; every other request (and the first one, which fills the caches) falls through to hono,
 * untouched, and gets hono's answer.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { bind } from '../../src/server/node.js';
import { makeServerRig, PUBLIC_URL, type ServerRig } from './rig.js';

let rig: ServerRig;
let listener: Awaited<ReturnType<typeof bind>>;
/** What the fast path returned for each request through the listener, in order. */
let answered: boolean[] = [];

before(async () => {
  rig = await makeServerRig();
  await rig.connection('alpha');
  await rig.connection('beta');
  const fast = rig.app.fastPath;
  assert.ok(fast, 'createApp builds the fast path when the API module is mounted');
  rig.app.fastPath = (req, res) => {
    const r = fast(req, res);
    answered.push(r);
    return r;
  };
  listener = await bind(0, '127.0.0.1');
  listener.setApp(rig.app);
});
after(async () => {
  await listener.close(100);
  await rig.close();
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request on its own socket; `headers` is a flat raw list so a header may repeat. */
function viaSocket(method: string, path: string, headers: string[] = []): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // A raw header list gets no Host from node: add it as any client would.
    const raw = ['Host', `127.0.0.1:${listener.port}`, ...headers];
    const req = request({ host: '127.0.0.1', port: listener.port, method, path, headers: raw, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers as Record<string, string>, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The same request through hono alone (app.request). */
async function viaHono(method: string, path: string, headers: string[] = []): Promise<Answer> {
  const h = new Headers();
  for (let i = 0; i < headers.length; i += 2) h.append(headers[i]!, headers[i + 1]!);
  const res = await rig.app.request(`${PUBLIC_URL}${path}`, { method, headers: h });
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
}

const auth = (key: string) => ['Authorization', `Bearer ${key}`];
const TRANSPORT = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding']);
const semantic = (h: Record<string, string>) => Object.fromEntries(Object.entries(h).filter(([k]) => !TRANSPORT.has(k)).sort());

function handouts(connection: string): number {
  return rig.app.services.metrics.tokenHandouts.get({ connection });
}

describe('token fast path', () => {
  test('answers a cached hand-out with exactly the bytes and headers hono sends', async () => {
    const key = await rig.key(['token:read'], ['alpha'], 'fast');
    answered = [];
    const first = await viaSocket('GET', '/api/v1/connections/alpha/token', auth(key));
    assert.equal(first.status, 200);
    assert.deepEqual(answered, [false], 'the first request fills the key and token caches through hono');
    const second = await viaSocket('GET', '/api/v1/connections/alpha/token', auth(key));
    assert.deepEqual(answered, [false, true], 'the second is answered in front of hono');
    const hono = await viaHono('GET', '/api/v1/connections/alpha/token', auth(key));
    assert.equal(second.status, 200);
    assert.equal(second.body, hono.body);
    assert.equal(second.body, first.body);
    assert.deepEqual(semantic(second.headers), semantic(first.headers));
    assert.deepEqual(semantic(second.headers), semantic(hono.headers));
    assert.equal(second.headers['cache-control'], 'no-store');
    assert.equal(second.headers['content-security-policy'], hono.headers['content-security-policy']);
    assert.equal(Number(second.headers['content-length']), Buffer.byteLength(second.body));
  });

  test('counts, audits and logs each hand-out once, like hono', async () => {
    const key = await rig.key(['token:read'], ['alpha'], 'audited');
    await viaSocket('GET', '/api/v1/connections/alpha/token', auth(key)); // fills the caches
    await rig.app.services.usage.flush();
    const metrics = rig.app.services.metrics;
    const handouts0 = handouts('alpha');
    const ok0 = metrics.httpRequests.get({ status: '2xx' });
    const logs0 = rig.logs.length;
    answered = [];
    for (let i = 0; i < 7; i++) assert.equal((await viaSocket('GET', '/api/v1/connections/alpha/token', auth(key))).status, 200);
    assert.deepEqual(answered, Array(7).fill(true));
    assert.equal(handouts('alpha') - handouts0, 7);
    assert.equal(metrics.httpRequests.get({ status: '2xx' }) - ok0, 7);
    const lines = rig.logs.slice(logs0).map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
    assert.equal(lines.length, 7);
    for (const l of lines) {
      assert.equal(l.level, 20, 'hot GETs log at debug');
      assert.deepEqual([l.method, l.path, l.status], ['GET', '/api/v1/connections/alpha/token', 200]);
      assert.equal(typeof l.ms, 'number');
    }
    await rig.app.services.usage.flush();
    const rec = (await rig.serverStore.listApiKeys()).find((k) => k.name === 'audited')!;
    assert.equal(rec.tokenHandouts, 8);
    assert.equal(rec.lastUsedAt, rig.clock.now);
    const audit = await rig.serverStore.listAudit({ limit: 1000, action: 'token.handout', target: 'alpha' });
    const mine = audit.filter((e) => e.actor === 'apikey:audited');
    assert.equal(mine.reduce((n, e) => n + Number(e.details['count']), 0), 8);
    const all = rig.logs.join('');
    assert.ok(!all.includes(key), 'the key is never logged');
  });

  test('everything it cannot answer from memory with the same checks goes to hono, with hono\'s answer', async () => {
    const key = await rig.key(['token:read'], ['alpha'], 'scoped');
    const proxyOnly = await rig.key(['proxy'], '*', 'proxy-only');
    const revoked = await rig.key(['token:read'], '*', 'revoked-later');
    // Warm every key and both tokens, so that a refusal below is the fast path's own decision, not a cold cache.
    for (const k of [key, proxyOnly, revoked]) await viaSocket('GET', '/api/v1/connections/alpha/token', auth(k));
    await viaSocket('GET', '/api/v1/connections/beta/token', auth(revoked));
    await rig.app.services.apiKeys.revoke('revoked-later', 'test');
    const cases: [string, string, string[], number][] = [
      ['no key', '/api/v1/connections/alpha/token', [], 401],
      ['not a bearer key', '/api/v1/connections/alpha/token', ['Authorization', 'Basic abc'], 401],
      ['malformed key', '/api/v1/connections/alpha/token', auth('dk_short'), 401],
      ['unknown key', '/api/v1/connections/alpha/token', auth(`dk_${'A'.repeat(43)}`), 401],
      ['revoked key (cached before)', '/api/v1/connections/alpha/token', auth(revoked), 401],
      ['no token:read permission', '/api/v1/connections/alpha/token', auth(proxyOnly), 403],
      ['connection outside the key scope', '/api/v1/connections/beta/token', auth(key), 403],
      ['unknown connection', '/api/v1/connections/nope/token', auth(key), 403],
      ['two Authorization headers', '/api/v1/connections/alpha/token', [...auth(key), ...auth(key)], 401],
      ['a query string', '/api/v1/connections/alpha/token?x=1', auth(key), 200],
      ['a percent-encoded name', '/api/v1/connections/%61lpha/token', auth(key), 200],
      ['a trailing slash', '/api/v1/connections/alpha/token/', auth(key), 404],
    ];
    const h0 = handouts('alpha') + handouts('beta');
    let viaHonoOk = 0;
    for (const [what, path, headers, status] of cases) {
      answered = [];
      const got = await viaSocket('GET', path, headers);
      const hono = await viaHono('GET', path, headers);
      assert.deepEqual(answered, [false], `${what}: not answered by the fast path`);
      assert.equal(got.status, hono.status, `${what}: same status as hono`);
      assert.equal(got.status, status, `${what}: ${got.body}`);
      if (status !== 200) assert.equal(JSON.parse(got.body).error.code, JSON.parse(hono.body).error.code, what);
      else viaHonoOk += 2;
    }
    assert.equal(handouts('alpha') + handouts('beta') - h0, viaHonoOk, 'only hono\'s successful hand-outs were counted');
    answered = [];
    const head = await viaSocket('HEAD', '/api/v1/connections/alpha/token', auth(key));
    assert.deepEqual(answered, [false], 'HEAD goes to hono');
    assert.equal(head.status, 200);
  });

  test('stale cache entries go through hono again: an expired token entry and a key revoked in the store', async () => {
    const key = await rig.key(['token:read'], '*', 'stale');
    await viaSocket('GET', '/api/v1/connections/alpha/token', auth(key));
    answered = [];
    rig.clock.now += rig.app.services.config.tokenCacheMs + 1;
    assert.equal((await viaSocket('GET', '/api/v1/connections/alpha/token', auth(key))).status, 200);
    assert.deepEqual(answered, [false], 'token and key entries are older than their cache times');
    assert.equal((await viaSocket('GET', '/api/v1/connections/alpha/token', auth(key))).status, 200);
    assert.deepEqual(answered, [false, true], 'refilled');
    // Revoked by another process: the fast path keeps serving only while the key's cache entry is fresh, as hono does.
    await rig.serverStore.revokeApiKey('stale', rig.clock.now);
    rig.clock.now += rig.app.services.config.apiKeyCacheMs + 1;
    answered = [];
    assert.equal((await viaSocket('GET', '/api/v1/connections/alpha/token', auth(key))).status, 401);
    assert.deepEqual(answered, [false]);
  });
});
