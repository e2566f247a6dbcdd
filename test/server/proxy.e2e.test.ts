/**
 * The Dropbox proxy (docs/proxy.md) over real sockets: the server app on a 127.0.0.1:0 listener in this process, the
 * emulator on another. Covers RPC, upload/download, header pass-through (Select-User, Path-Root, Range → 206),
 * refresh-and-retry on expired_access_token, the shared 429 back-off, API key permission and scope errors, and
 * attempts to reach another host or a path outside /2/.
 * The 300 MiB transfer with the RSS bound is in proxy-large.e2e.test.ts (a child-process server).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { createApp, type ServerApp } from '../../src/server/app.js';
import { bind, type Listener } from '../../src/server/node.js';
import { createProxyModule } from '../../src/server/proxy/index.js';
import { defaultSleep, type Sleep } from '../../src/sleep.js';
import { dropboxContentHash, patternBytes } from '../helpers/content-hash.js';
import { emulatorFetch } from '../helpers/dropbox-sdk.js';
import { headerSafeJson } from '../helpers/emulator.js';
import { makeServerRig, type ServerRig } from './rig.js';
import { readConfig } from '../../src/config.js';
import { tmpdir } from 'node:os';

let rig: ServerRig;
let listener: Listener & { setApp(app: ServerApp): void };
let base: string;
let key: string;
let account: { accountId: string; email: string };

before(async () => {
  rig = await makeServerRig();
  account = await rig.connection('c1');
  await rig.connection('c2');
  key = await rig.key(['proxy'], ['c1'], 'proxy-c1');
  listener = await bind(0, '127.0.0.1');
  listener.setApp(rig.app);
  base = `http://127.0.0.1:${listener.port}`;
});

after(async () => {
  await listener?.close(0);
  await rig?.close();
});

function proxy(path: string, init: RequestInit & { key?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const k = init.key === undefined ? key : init.key;
  if (k !== null) headers.set('Authorization', `Bearer ${k}`);
  return fetch(`${base}/proxy${path}`, { method: 'POST', ...init, headers });
}

function rpc(conn: string, route: string, arg?: unknown, headers: Record<string, string> = {}, k?: string): Promise<Response> {
  return proxy(`/${conn}/2/${route}`, {
    headers: arg === undefined ? headers : { 'Content-Type': 'application/json', ...headers },
    ...(arg === undefined ? {} : { body: JSON.stringify(arg) }),
    ...(k === undefined ? {} : { key: k }),
  });
}

async function upload(conn: string, path: string, bytes: Uint8Array): Promise<Response> {
  return proxy(`/${conn}/2/files/upload`, {
    headers: { 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': headerSafeJson({ path, mode: 'overwrite' }) },
    body: bytes as Uint8Array<ArrayBuffer>,
  });
}

/** The emulator's log entries for one route since the log was last cleared. */
async function logged(route: string) {
  return (await rig.emu.control.requests()).filter((r) => r.path === `/2/${route}`);
}

test('RPC: users/get_current_account through the proxy answers for the connection with the connection token', async () => {
  await rig.emu.control.clearRequests();
  const res = await rpc('c1', 'users/get_current_account');
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.ok(res.headers.get('x-dropbox-request-id'));
  const body = await res.json();
  assert.equal(body.account_id, account.accountId);
  assert.equal(body.email, account.email);
  const [entry] = await logged('users/get_current_account');
  // The emulator logs a fingerprint of the bearer token: it was the connection's token, not the API key.
  assert.match(String(entry?.authorization), /^Bearer sha256:/);
  const current = await rig.dk.getToken('c1');
  const direct = await rig.emu.rpc('users/get_current_account', undefined, current.accessToken);
  assert.equal(direct.status, 200);
  const entries = await logged('users/get_current_account');
  assert.equal(entries[0]?.authorization, entries[1]?.authorization);
});

test('RPC with a JSON argument, and Dropbox errors pass through unchanged (409 with the route error)', async () => {
  const folder = await rpc('c1', 'files/create_folder_v2', { path: '/proxied' });
  assert.equal(folder.status, 200);
  assert.equal((await folder.json()).metadata.path_display, '/proxied');
  const missing = await rpc('c1', 'files/get_metadata', { path: '/does-not-exist' });
  assert.equal(missing.status, 409);
  const err = await missing.json();
  assert.equal(err.error['.tag'], 'path');
  assert.match(err.error_summary, /^path\/not_found\//);
  const bad = await rpc('c1', 'files/get_metadata', { path: 'no-slash' });
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /^Error in call to API function "files\/get_metadata"/);
});

test('upload and download round trip on the content host, with Range → 206, ETag and If-None-Match → 304', async () => {
  const data = patternBytes(3 * 1024 * 1024 + 17, 7);
  const up = await upload('c1', '/round/trip.bin', data);
  assert.equal(up.status, 200);
  const meta = await up.json();
  assert.equal(meta.size, data.length);
  assert.equal(meta.content_hash, dropboxContentHash(data));

  const down = await proxy('/c1/2/files/download', { headers: { 'Dropbox-API-Arg': headerSafeJson({ path: '/round/trip.bin' }) } });
  assert.equal(down.status, 200);
  assert.equal(down.headers.get('content-length'), String(data.length));
  assert.equal(JSON.parse(down.headers.get('dropbox-api-result')!).content_hash, meta.content_hash);
  assert.notEqual(down.headers.get('connection'), 'close', 'keep-alive survives a proxied download');
  assert.ok(Buffer.from(await down.arrayBuffer()).equals(data));

  const range = await proxy('/c1/2/files/download', { headers: { 'Dropbox-API-Arg': headerSafeJson({ path: '/round/trip.bin' }), Range: 'bytes=100-199' } });
  assert.equal(range.status, 206);
  assert.equal(range.headers.get('content-range'), `bytes 100-199/${data.length}`);
  assert.ok(Buffer.from(await range.arrayBuffer()).equals(data.subarray(100, 200)));

  const etag = down.headers.get('etag');
  assert.ok(etag);
  const cached = await proxy('/c1/2/files/download', { headers: { 'Dropbox-API-Arg': headerSafeJson({ path: '/round/trip.bin' }), 'If-None-Match': etag } });
  assert.equal(cached.status, 304);

  // Download routes also take GET with the argument in the URL (Dropbox HTTP docs: hosts, Dropbox HTTP docs: request styles and headers).
  const viaGet = await proxy(`/c1/2/files/download?arg=${encodeURIComponent(JSON.stringify({ path: '/round/trip.bin' }))}`, { method: 'GET' });
  assert.equal(viaGet.status, 200);
  assert.equal(Number(viaGet.headers.get('content-length')), data.length);
  await viaGet.body?.cancel();
  const head = await proxy('/c1/2/files/download', { method: 'HEAD', headers: { 'Dropbox-API-Arg': headerSafeJson({ path: '/round/trip.bin' }) } });
  assert.equal(head.status, 200);
  assert.equal(Number(head.headers.get('content-length')), data.length);
  assert.equal((await head.arrayBuffer()).byteLength, 0);
});

test('upload sessions: an empty-bodied start, streamed appends and finish go to the content host', async () => {
  const start = await proxy('/c1/2/files/upload_session/start', { headers: { 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': '{}' }, body: new Uint8Array(0) });
  assert.equal(start.status, 200);
  const { session_id } = await start.json();
  const part = patternBytes(2 * 1024 * 1024, 3);
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(part.subarray(0, 1024 * 1024));
      c.enqueue(part.subarray(1024 * 1024));
      c.close();
    },
  });
  const append = await proxy('/c1/2/files/upload_session/append_v2', {
    headers: { 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': headerSafeJson({ cursor: { session_id, offset: 0 } }) },
    body: stream,
    duplex: 'half',
  } as RequestInit);
  assert.equal(append.status, 200);
  const finish = await proxy('/c1/2/files/upload_session/finish', {
    headers: { 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': headerSafeJson({ cursor: { session_id, offset: part.length }, commit: { path: '/session.bin' } }) },
    body: new Uint8Array(0),
  });
  assert.equal(finish.status, 200);
  assert.equal((await finish.json()).content_hash, dropboxContentHash(part));
});

test('Dropbox-API-Path-Root passes through: home works, another namespace is Dropbox\'s 422', async () => {
  const home = await rpc('c1', 'users/get_current_account', undefined, { 'Dropbox-API-Path-Root': '{".tag":"home"}' });
  assert.equal(home.status, 200);
  const other = await rpc('c1', 'users/get_current_account', undefined, { 'Dropbox-API-Path-Root': '{".tag":"root","root":"1"}' });
  assert.equal(other.status, 422);
  assert.equal((await other.json()).error['.tag'], 'invalid_root');
});

test('Dropbox-API-Select-User passes through for a team connection', async () => {
  const team = await rig.emu.control.createApp({
    team: true,
    scopes: ['team_info.read', 'members.read', 'team_data.member', 'account_info.read', 'files.metadata.read'],
    redirect_uris: ['http://127.0.0.1/*'],
  });
  const admin = await rig.emu.control.createAccount({ team: { name: 'Proxy Team' }, team_admin: true });
  const member = await rig.emu.control.createAccount({ team: { name: 'Proxy Team' } });
  assert.equal(member.team_id, admin.team_id);
  await rig.dk.addApp({ name: 'teamapp', key: team.key, secret: team.secret!, scopes: team.scopes, team: true, access: 'full' });
  const grant = await rig.emu.control.grant({ app: team.key, account: admin.account_id, token_access_type: 'offline' });
  await rig.dk.import({ connection: 'team1', app: 'teamapp', refreshToken: grant.refresh_token! });
  const teamKey = await rig.key(['proxy'], ['team1'], 'proxy-team');

  const info = await rpc('team1', 'team/get_info', undefined, {}, teamKey);
  assert.equal(info.status, 200);
  const without = await rpc('team1', 'users/get_current_account', undefined, {}, teamKey);
  assert.equal(without.status, 400);
  assert.match(await without.text(), /Dropbox-API-Select-User/);
  const asMember = await rpc('team1', 'users/get_current_account', undefined, { 'Dropbox-API-Select-User': String(member.team_member_id) }, teamKey);
  assert.equal(asMember.status, 200);
  assert.equal((await asMember.json()).account_id, member.account_id);
});

test('an expired token: one shared refresh for concurrent callers, then each request is retried once', async () => {
  await rig.emu.control.clearRequests();
  const before = (await rig.dk.getToken('c1')).accessToken;
  // Only Dropbox's clock moves: dropkey still believes the token is valid, so Dropbox answers 401 expired_access_token.
  await rig.emu.control.advanceClock(5 * 3600);
  const results = await Promise.all([1, 2, 3, 4].map(() => rpc('c1', 'users/get_current_account')));
  assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200]);
  for (const r of results) assert.equal((await r.json()).account_id, account.accountId);
  const log = await rig.emu.control.requests();
  const refreshes = log.filter((r) => r.path === '/oauth2/token');
  assert.equal(refreshes.length, 1, 'one refresh for all four callers');
  const calls = log.filter((r) => r.path === '/2/users/get_current_account');
  assert.equal(calls.filter((r) => r.status === 401).length, 4);
  assert.equal(calls.filter((r) => r.status === 200).length, 4);
  assert.notEqual((await rig.dk.getToken('c1')).accessToken, before);
});

test('an expired token on a streamed upload: the 401 is passed back, not retried (the body cannot be sent twice)', async () => {
  await rig.emu.control.clearRequests();
  await rig.emu.control.advanceClock(5 * 3600);
  const big = patternBytes(2 * 1024 * 1024, 11);
  const res = await upload('c1', '/expired.bin', big);
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error['.tag'], 'expired_access_token');
  assert.equal((await logged('files/upload')).length, 1);
  // A small (replayable) upload is refreshed and retried.
  const small = await upload('c1', '/small.bin', Buffer.from('small'));
  assert.equal(small.status, 200);
  assert.equal((await logged('files/upload')).length, 3);
});

/** A proxy app on the same services whose waits are observable: each sleep is reported before it starts. */
/**
 * A proxy app on its own listener whose back-off sleeps are observed. With `manual`, its clock is virtual and a
 * sleep lasts until the test calls release() (which moves the clock past it): no real waiting, and the test sees
 * exactly who waited while the block was in force. Without it, sleeps are real (for cases that must not sleep).
 */
async function observedProxy(o: { maxWaitMs?: number; manual?: boolean } = {}) {
  const sleeps: number[] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const held: Array<{ ms: number; resolve: () => void }> = [];
  let now = Date.now();
  const sleep: Sleep = async (ms, signal) => {
    sleeps.push(ms);
    for (const w of waiters.splice(0)) if (sleeps.length >= w.n) w.resolve();
    else waiters.push(w);
    if (o.manual) await new Promise<void>((resolve) => held.push({ ms, resolve }));
    else await defaultSleep(ms, signal);
  };
  // The rig's clock is frozen: the back-off needs one that moves (virtual with `manual`, real otherwise).
  const clock = o.manual ? () => now : Date.now;
  const { manual: _manual, ...proxyOptions } = o;
  const app = createApp({ ...rig.app.services, clock }, { modules: [createProxyModule({ sleep, ...proxyOptions })] });
  const l = await bind(0, '127.0.0.1');
  l.setApp(app);
  const url = `http://127.0.0.1:${l.port}`;
  const releaseAll = () => {
    now += Math.max(0, ...held.map((h) => h.ms));
    for (const h of held.splice(0)) h.resolve();
  };
  return {
    sleeps,
    /** Resolves once n sleeps have started. */
    sleeping(n: number): Promise<void> {
      return new Promise((resolve) => (sleeps.length >= n ? resolve() : waiters.push({ n, resolve })));
    },
    /** (manual) Moves the virtual clock past the longest held sleep and ends them all. */
    release: releaseAll,
    call(route: string): Promise<Response> {
      return fetch(`${url}/proxy/c1/2/${route}`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    },
    close: () => {
      releaseAll();
      return l.close(0);
    },
  };
}

test('429: the first caller meets Retry-After; concurrent callers wait out the same block; all succeed', async () => {
  const p = await observedProxy({ manual: true });
  try {
    await rig.emu.control.clearRequests();
    await rig.emu.control.fault({ route: 'users/get_current_account', status: 429, retry_after: 1, count: 1 });
    const first = p.call('users/get_current_account');
    await p.sleeping(1); // the first caller got the 429 and is waiting
    const others = [p.call('users/get_current_account'), p.call('users/get_current_account')];
    await p.sleeping(3); // the others are waiting on the shared block before going upstream
    // While the block is in force, nothing but the rate-limited call has reached Dropbox.
    assert.deepEqual((await logged('users/get_current_account')).map((r) => r.status), [429]);
    assert.deepEqual(p.sleeps, [1000, 1000, 1000], 'each caller waits out what is left of the 1 s Retry-After');
    p.release();
    const all = await Promise.all([first, ...others]);
    assert.deepEqual(all.map((r) => r.status), [200, 200, 200]);
    const calls = await logged('users/get_current_account');
    assert.deepEqual(calls.map((r) => r.status), [429, 200, 200, 200], 'the first call retried, the others went once each');
    assert.equal(p.sleeps.length, 3, 'nobody waited twice');
    assert.ok(rig.app.services.metrics.upstream429.get({ host: 'api' }) >= 1);
  } finally {
    await p.close();
  }
});

test('429 with a Retry-After beyond the bound: passed back, and later callers get a 429 at once without reaching Dropbox', async () => {
  const p = await observedProxy({ maxWaitMs: 2_000 });
  try {
    await rig.emu.control.clearRequests();
    await rig.emu.control.fault({ route: 'users/get_current_account', status: 429, retry_after: 120, count: 1 });
    const first = await p.call('users/get_current_account');
    assert.equal(first.status, 429);
    assert.equal(first.headers.get('retry-after'), '120');
    const second = await p.call('users/get_current_account');
    assert.equal(second.status, 429);
    const after = Number(second.headers.get('retry-after'));
    assert.ok(after > 100 && after <= 120);
    const body = await second.json();
    // Readable both as dropkey's error and as Dropbox's RateLimitError (Dropbox docs: errors).
    assert.equal(body.error.code, 'DROPKEY_RATE_LIMITED');
    assert.equal(body.error.reason['.tag'], 'too_many_requests');
    assert.equal(body.error.retry_after, after);
    assert.equal((await logged('users/get_current_account')).length, 1);
    assert.deepEqual(p.sleeps, []);
  } finally {
    await p.close();
  }
});

test('API keys: none or unknown → 401, no proxy permission or another connection → 403, unknown connection → 404', async () => {
  const none = await rpc('c1', 'users/get_current_account', undefined, {}, undefined);
  assert.equal(none.status, 200); // sanity: the default key works
  const missing = await proxy('/c1/2/users/get_current_account', { key: null });
  assert.equal(missing.status, 401);
  assert.equal((await missing.json()).error.code, 'DROPKEY_UNAUTHORIZED');
  const unknown = await proxy('/c1/2/users/get_current_account', { key: 'dk_' + 'x'.repeat(40) });
  assert.equal(unknown.status, 401);
  const tokenOnly = await rig.key(['token:read'], ['c1']);
  const noPerm = await proxy('/c1/2/users/get_current_account', { key: tokenOnly });
  assert.equal(noPerm.status, 403);
  assert.match((await noPerm.json()).error.message, /"proxy" permission/);
  // admin does not imply proxy: permissions are a list, not a ladder.
  const adminOnly = await rig.key(['admin', 'token:read'], '*');
  const noProxy = await proxy('/c1/2/users/get_current_account', { key: adminOnly });
  assert.equal(noProxy.status, 403);
  assert.match((await noProxy.json()).error.message, /"proxy" permission/);
  const otherConn = await proxy('/c2/2/users/get_current_account');
  assert.equal(otherConn.status, 403);
  assert.equal((await otherConn.json()).error.code, 'DROPKEY_FORBIDDEN');
  const all = await rig.key(['proxy'], '*');
  const nothing = await proxy('/nope/2/users/get_current_account', { key: all });
  assert.equal(nothing.status, 404);
  assert.equal((await nothing.json()).error.code, 'DROPKEY_NOT_FOUND');
  // The caller's key never reaches Dropbox.
  await rig.emu.control.clearRequests();
  await rpc('c1', 'users/get_current_account');
  const [entry] = await logged('users/get_current_account');
  assert.ok(!JSON.stringify(entry).includes(key));
});

test('only /2/<route> on the configured hosts: path tricks are refused, Host and X-Forwarded-Host are ignored', async () => {
  await rig.emu.control.clearRequests();
  const tricks = [
    '/c1/2/../../api/v1/connections',
    '/c1/2/%2e%2e/%2e%2e/oauth2/token',
    '/c1/2/files%2Fdownload',
    '/c1/2/files/..%2F..%2F_emulator/requests',
    '/c1/2//evil.example.com/x',
    '/c1/2/_emulator/../oauth2/token', // normalized to /2/oauth2/token: still a /2/ route, Dropbox's 400
    '/c1/2/x/../../../oauth2/token',
    '/c1/2/Users/get_current_account',
    '/c1/3/users/get_current_account',
    '/c1/2/',
  ];
  for (const t of tricks) {
    const res = await proxy(t);
    assert.ok(res.status >= 400, `${t} → ${res.status}`);
    await res.body?.cancel();
  }
  // Raw request targets, as a hostile client sends them (fetch would normalize these before sending): backslashes,
  // encoded backslashes and slashes, dot segments, double slashes, and another connection's name reached by climbing.
  const rawTricks = [
    '/proxy/c1/2/files\\..\\..\\api/v1/connections',
    '/proxy/c1/2/files%5c..%5c..%5capi/v1/connections',
    '/proxy/c1/2/..%5c..%5coauth2/token',
    '/proxy/c1/2/%2e%2e%2f%2e%2e%2foauth2/token',
    '/proxy/c1/2//oauth2/token',
    '/proxy/c1//2/users/get_current_account',
    '/proxy/c1%2f2/users/get_current_account',
    '/proxy/c1/2/.%2e/.%2e/.%2e/proxy/c2/2/users/get_current_account',
    '/proxy/c1/2/users/get_current_account/../../../../c2/2/users/get_current_account',
  ];
  for (const t of rawTricks) {
    const head = await rawRequest(`POST ${t} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
    assert.ok(status >= 400, `${t} → ${head.slice(0, 200)}`);
  }
  const reached = (await rig.emu.control.requests()).map((r) => r.path);
  assert.ok(reached.every((p) => /^\/2\/[a-z0-9_]+(\/[a-z0-9_]+)*$/.test(p)), reached.join(' '));
  // Only /2/oauth2/token (the normalized trick above, a /2/ route Dropbox refuses) may have reached the emulator.
  assert.deepEqual([...new Set(reached)].filter((p) => p !== '/2/oauth2/token'), [], reached.join(' '));
  // Host / X-Forwarded-Host / an absolute request target: the request goes to the configured emulator anyway.
  const raw = await rawRequest(
    `POST http://evil.example.com/proxy/c1/2/users/get_current_account HTTP/1.1\r\nHost: evil.example.com\r\nX-Forwarded-Host: evil.example.com\r\n` +
      `Authorization: Bearer ${key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
  );
  assert.match(raw, /^HTTP\/1\.1 200 /);
  const log = await rig.emu.control.requests();
  assert.ok(log.every((r) => r.path.startsWith('/2/')));
  assert.equal(log.filter((r) => r.path === '/2/users/get_current_account').length, 1);
  const fwd = log.find((r) => r.path === '/2/users/get_current_account')!;
  assert.ok(!JSON.stringify(fwd.headers).includes('evil'), 'Host and X-Forwarded-Host are not forwarded');
  // Wrong methods: RPC routes take POST only.
  const get = await proxy('/c1/2/users/get_current_account', { method: 'GET' });
  assert.equal(get.status, 405);
});

test('another host on this machine is never contacted, whatever the request names', async () => {
  const hits: string[] = [];
  const other = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.end('other');
  });
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  const target = `127.0.0.1:${(other.address() as AddressInfo).port}`;
  try {
    const attempts = [
      rawRequest(`POST http://${target}/2/users/get_current_account HTTP/1.1\r\nHost: ${target}\r\nAuthorization: Bearer ${key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`),
      rawRequest(`POST http://${target}/proxy/c1/2/users/get_current_account HTTP/1.1\r\nHost: ${target}\r\nX-Forwarded-Host: ${target}\r\nForwarded: host=${target}\r\nAuthorization: Bearer ${key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`),
      proxy(`/c1/2/users/get_current_account?url=http://${target}/`).then((r) => r.text()),
      proxy(`/c1/2/http:%2F%2F${target}%2F`).then((r) => r.text()),
      proxy(`/c1/2/%2F%2F${target}/x`).then((r) => r.text()),
      proxy(`/c1/2/@${target}/x`).then((r) => r.text()),
      proxy('/c1/2/files/download', { headers: { 'Dropbox-API-Arg': JSON.stringify({ path: `http://${target}/` }) } }).then((r) => r.text()),
    ];
    await Promise.all(attempts);
    assert.deepEqual(hits, []);
  } finally {
    await new Promise((r) => other.close(r));
  }
});

test('the caller\'s query authorization, cookies and hop-by-hop headers do not reach Dropbox', async () => {
  await rig.emu.control.clearRequests();
  const res = await proxy('/c1/2/users/get_current_account?authorization=Bearer%20stolen', {
    headers: { Cookie: 'dropkey_session=abc', 'Proxy-Authorization': 'Basic xyz', 'X-Forwarded-For': '10.0.0.1' },
  });
  assert.equal(res.status, 200);
  const [entry] = await logged('users/get_current_account');
  const seen = JSON.stringify(entry);
  for (const s of ['stolen', 'dropkey_session', 'xyz', '10.0.0.1']) assert.ok(!seen.includes(s), s);
});

test('metrics: proxy bytes by direction, requests by connection and status, upstream latency by host', async () => {
  const m = rig.app.services.metrics;
  const up0 = m.proxyBytes.get({ direction: 'upload' });
  const down0 = m.proxyBytes.get({ direction: 'download' });
  const data = patternBytes(1500, 5);
  assert.equal((await upload('c1', '/m.bin', data)).status, 200);
  const down = await proxy('/c1/2/files/download', { headers: { 'Dropbox-API-Arg': headerSafeJson({ path: '/m.bin' }) } });
  await down.arrayBuffer();
  assert.equal(m.proxyBytes.get({ direction: 'upload' }) - up0, 1500);
  assert.ok(m.proxyBytes.get({ direction: 'download' }) - down0 >= 1500);
  const ok0 = m.proxyRequests.get({ connection: 'c1', status: '200' });
  const anon0 = m.proxyRequests.get({ connection: '', status: '401' });
  await (await rpc('c1', 'users/get_current_account')).arrayBuffer();
  await (await proxy('/whatever/2/users/get_current_account', { key: null })).arrayBuffer();
  assert.equal(m.proxyRequests.get({ connection: 'c1', status: '200' }) - ok0, 1);
  assert.equal(m.proxyRequests.get({ connection: '', status: '401' }) - anon0, 1, 'unauthenticated names are not labels');
  const text = await (await fetch(`${base}/metrics`)).text();
  assert.match(text, /dropkey_proxy_bytes_total\{direction="download"\} \d+/);
  assert.match(text, /dropkey_proxy_requests_total\{connection="c1",status="200"\} \d+/);
  assert.match(text, /dropkey_upstream_request_duration_seconds_count\{host="content"\} \d+/);
});

function rawRequest(head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(listener.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('data', (d) => chunks.push(d));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    sock.on('error', reject);
    sock.write(head);
  });
}

test('an RPC body over 1 MiB is refused with 413 before anything goes upstream', async () => {
  await rig.emu.control.clearRequests();
  const res = await proxy('/c1/2/files/get_metadata', { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ path: '/x', pad: 'x'.repeat(1024 * 1024) }) });
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error.code, 'DROPKEY_PAYLOAD_TOO_LARGE');
  assert.equal((await logged('files/get_metadata')).length, 0);
});

test('a caller that goes away mid-download does not hurt the server', async () => {
  const data = patternBytes(8 * 1024 * 1024, 21);
  assert.equal((await upload('c1', '/abort.bin', data)).status, 200);
  const ac = new AbortController();
  const res = await proxy('/c1/2/files/download', { headers: { 'Dropbox-API-Arg': headerSafeJson({ path: '/abort.bin' }) }, signal: ac.signal });
  const reader = res.body!.getReader();
  await reader.read();
  ac.abort();
  await reader.closed.catch(() => undefined);
  const again = await proxy('/c1/2/files/download', { headers: { 'Dropbox-API-Arg': headerSafeJson({ path: '/abort.bin' }) } });
  assert.ok(Buffer.from(await again.arrayBuffer()).equals(data));
});

test('without a socket (app.request): the fetch transport streams the same answers', async () => {
  const auth = { Authorization: `Bearer ${key}` };
  const me = await rig.app.request('http://dropkey.test/proxy/c1/2/users/get_current_account', { method: 'POST', headers: auth });
  assert.equal(me.status, 200);
  assert.equal((await me.json()).account_id, account.accountId);
  const data = patternBytes(2 * 1024 * 1024 + 5, 9);
  const up = await rig.app.request('http://dropkey.test/proxy/c1/2/files/upload', {
    method: 'POST',
    headers: { ...auth, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': headerSafeJson({ path: '/web.bin' }), 'Content-Length': String(data.length) },
    body: data as Uint8Array<ArrayBuffer>,
  });
  assert.equal(up.status, 200);
  assert.equal((await up.json()).content_hash, dropboxContentHash(data));
  const range = await rig.app.request('http://dropkey.test/proxy/c1/2/files/download', {
    method: 'POST',
    headers: { ...auth, 'Dropbox-API-Arg': headerSafeJson({ path: '/web.bin' }), Range: 'bytes=-10' },
  });
  assert.equal(range.status, 206);
  assert.ok(Buffer.from(await range.arrayBuffer()).equals(data.subarray(data.length - 10)));
  const denied = await rig.app.request('http://dropkey.test/proxy/c2/2/users/get_current_account', { method: 'POST', headers: auth });
  assert.equal(denied.status, 403);
});

test('the official JS SDK works through the proxy with the API key as its access token', async () => {
  const { Dropbox } = await import('dropbox');
  // The SDK only knows Dropbox's hosts: its fetch sends them all to the proxy's base for the connection.
  const dbx = new Dropbox({ accessToken: key, fetch: emulatorFetch(`${base}/proxy/c1`) });
  const me = await dbx.usersGetCurrentAccount();
  assert.equal(me.result.account_id, account.accountId);
  const bytes = Buffer.from('through the SDK and the proxy');
  const up = await dbx.filesUpload({ path: '/sdk/via-proxy.txt', contents: bytes, mode: { '.tag': 'overwrite' } });
  assert.equal(up.result.size, bytes.length);
  const down = (await dbx.filesDownload({ path: '/sdk/via-proxy.txt' })) as unknown as { result: { fileBinary: Buffer; content_hash: string } };
  assert.ok(down.result.fileBinary.equals(bytes));
  const listed = await dbx.filesListFolder({ path: '/sdk' });
  assert.deepEqual(listed.result.entries.map((e) => e.name), ['via-proxy.txt']);
});

test('longpoll goes to the notify host without the token (noauth) and answers when the folder changes', async () => {
  const latest = await rpc('c1', 'files/list_folder/get_latest_cursor', { path: '' });
  assert.equal(latest.status, 200);
  const { cursor } = await latest.json();
  await rig.emu.control.clearRequests();
  const waiting = rpc('c1', 'files/list_folder/longpoll', { cursor, timeout: 30 });
  assert.equal((await upload('c1', '/longpoll-change.txt', Buffer.from('x'))).status, 200);
  const res = await waiting;
  assert.equal(res.status, 200);
  assert.equal((await res.json()).changes, true);
  const [entry] = await logged('files/list_folder/longpoll');
  assert.equal(entry?.authorization, undefined, 'no Authorization on a noauth route');
});

test('a refresh that fails on the proxy path answers 409 DROPKEY_REAUTH_REQUIRED and emits connection.needs_reauth', async () => {
  await rig.connection('gone');
  const goneKey = await rig.key(['proxy'], ['gone']);
  assert.equal((await rpc('gone', 'users/get_current_account', undefined, {}, goneKey)).status, 200);
  // The token expires at Dropbox, and Dropbox refuses the refresh token (the user disconnected the app).
  await rig.emu.control.advanceClock(5 * 3600);
  await rig.emu.control.fault({ route: 'oauth2/token', status: 400, body: { error: 'invalid_grant', error_description: 'refresh token is invalid or revoked' }, count: 1 });
  const res = await rpc('gone', 'users/get_current_account', undefined, {}, goneKey);
  assert.equal(res.status, 409);
  const body = await res.json();
  assert.equal(body.error.code, 'DROPKEY_REAUTH_REQUIRED');
  assert.match(body.error.details.reconnect_url, /\/connections\/gone\/reconnect$/);
  const event = rig.events.find((e) => e.type === 'connection.needs_reauth' && e.connection === 'gone');
  assert.ok(event, JSON.stringify(rig.events.map((e) => e.type)));
  assert.equal(event.data['detected_by'], 'proxy');
  assert.equal(rig.events.filter((e) => e.type === 'connection.needs_reauth' && e.connection === 'gone').length, 1);
  // From now on the proxy answers 409 at once, without calling Dropbox.
  await rig.emu.control.clearRequests();
  assert.equal((await rpc('gone', 'users/get_current_account', undefined, {}, goneKey)).status, 409);
  assert.equal((await logged('users/get_current_account')).length, 0);
});

test('Dropbox answering before the caller finished sending: the answer arrives and closes the connection', async () => {
  // A fresh token first (earlier tests moved Dropbox's clock): RPC calls refresh and retry on their own.
  assert.equal((await rpc('c1', 'users/get_current_account')).status, 200);
  // An upload with a wrong Content-Type: Dropbox answers 400 without reading the body.
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (sent < 2 * 1024 * 1024) {
        sent += 256 * 1024;
        return c.enqueue(new Uint8Array(256 * 1024));
      }
      await released; // the caller holds the rest of its body until it has the answer
      c.close();
    },
  });
  const res = await proxy('/c1/2/files/upload', {
    headers: { 'Content-Type': 'application/json', 'Dropbox-API-Arg': headerSafeJson({ path: '/early.bin' }) },
    body,
    duplex: 'half',
  } as RequestInit);
  assert.equal(res.status, 400);
  assert.equal(res.headers.get('connection'), 'close');
  assert.match(await res.text(), /Bad HTTP "Content-Type" header/);
  release();
  // The next request gets a fresh connection and works.
  assert.equal((await rpc('c1', 'users/get_current_account')).status, 200);
});

test('metrics: requests to made-up connection names add no series of their own', async () => {
  const any = await rig.key(['proxy'], '*', 'proxy-any');
  const unnamed404 = rig.app.services.metrics.proxyRequests.get({ connection: '', status: '404' });
  for (let i = 0; i < 30; i++) {
    const res = await rpc(`made-up-${i}`, 'users/get_current_account', undefined, {}, any);
    assert.equal(res.status, 404);
    await res.arrayBuffer();
  }
  // A bad method on an existing connection is still counted under its name.
  const wrong = await proxy('/c1/2/users/get_current_account', { method: 'GET', key: any });
  assert.equal(wrong.status, 405);
  const text = rig.app.services.metrics.registry.render();
  assert.doesNotMatch(text, /made-up/);
  const { proxyRequests } = rig.app.services.metrics;
  assert.equal(proxyRequests.get({ connection: '', status: '404' }), unnamed404 + 30);
  assert.ok(proxyRequests.get({ connection: 'c1', status: '405' }) >= 1);
});

test('upstream timeout: an RPC that Dropbox does not answer in time gets a 504 instead of waiting it out', { timeout: 30_000 }, async () => {
  const config = { ...rig.app.services.config, proxyUpstreamTimeoutMs: 300 };
  const app = createApp({ ...rig.app.services, config }, { modules: [createProxyModule()] });
  const l = await bind(0, '127.0.0.1');
  l.setApp(app);
  try {
    await rig.emu.control.fault({ route: 'users/get_current_account', status: 200, delay_ms: 3_000, count: 1 });
    const started = performance.now();
    const res = await fetch(`http://127.0.0.1:${l.port}/proxy/c1/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    const ms = performance.now() - started;
    assert.equal(res.status, 504);
    const body = (await res.json()) as { error: { code: string; message: string; hint: string } };
    assert.equal(body.error.code, 'DROPKEY_UPSTREAM_TIMEOUT');
    assert.match(body.error.message, /did not answer users\/get_current_account within 0\.3 s/);
    assert.match(body.error.hint, /DROPKEY_PROXY_UPSTREAM_TIMEOUT/);
    assert.ok(ms < 2_500, `answered after ${ms} ms`);
    // The next call is answered normally.
    const ok = await fetch(`http://127.0.0.1:${l.port}/proxy/c1/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    assert.equal(ok.status, 200);
  } finally {
    await rig.emu.control.clearFaults();
    await l.close(0);
  }
});

test('upstream timeout: the default is 60 s, and serve reads DROPKEY_PROXY_UPSTREAM_TIMEOUT (seconds)', async () => {
  assert.equal(rig.app.services.config.proxyUpstreamTimeoutMs, 60_000);
  const env = { DROPKEY_HOME: tmpdir() };
  assert.equal((await readConfig({ ...env, DROPKEY_PROXY_UPSTREAM_TIMEOUT: '90' })).proxyUpstreamTimeoutMs, 90_000);
  assert.equal((await readConfig(env)).proxyUpstreamTimeoutMs, undefined);
  for (const bad of ['0', '-1', 'soon', '1.5', '3601']) {
    await assert.rejects(readConfig({ ...env, DROPKEY_PROXY_UPSTREAM_TIMEOUT: bad }), (e: unknown) => /DROPKEY_PROXY_UPSTREAM_TIMEOUT/.test(JSON.stringify(e) + String((e as Error).message)));
  }
});
