import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { DropboxClient, type FetchLike } from './client.js';
import { isRetryable, retryAfterOf } from './errors.js';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import { dropboxUrlsFromBase, DROPBOX_URLS } from './hosts.js';

type Step = Response | Error | ((req: Request) => Response | Promise<Response>);

/** Declares the expected exchanges in order; fails on an unexpected one; `done()` asserts none is left. */
function script(steps: Step[]) {
  const requests: Request[] = [];
  const bodies: Array<Promise<string>> = [];
  const f: FetchLike = async (input, init) => {
    const req = new Request(input, init);
    requests.push(req);
    bodies.push(req.clone().text().catch(() => '<unreadable>'));
    const s = steps.shift();
    if (s === undefined) throw new Error(`unexpected request ${req.url}`);
    if (s instanceof Error) throw s;
    return typeof s === 'function' ? s(req) : s;
  };
  return { f, requests, bodies, done: () => assert.equal(steps.length, 0, 'unused scripted responses') };
}

function json(status: number, body: unknown, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
}

function tokens(...list: string[]) {
  const calls: Array<{ forceRefresh?: boolean; rejectedToken?: string }> = [];
  let i = 0;
  return {
    calls,
    get: async (o: { forceRefresh?: boolean; rejectedToken?: string }) => {
      calls.push(o);
      return list[Math.min(i++, list.length - 1)]!;
    },
  };
}

function sleeps() {
  const waits: number[] = [];
  return { waits, sleep: async (ms: number) => void waits.push(ms) };
}

const EXPIRED = { error_summary: 'expired_access_token/..', error: { '.tag': 'expired_access_token' } };

test('rpc: api host, Bearer, Void has no body and no content-type; JSON arg otherwise', async () => {
  const s = script([json(200, { account_id: 'dbid:x' }), json(200, { entries: [] })]);
  const t = tokens('sl.token1');
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: t.get, userAgent: 'dropkey-test' });
  assert.deepEqual(await c.rpc('users/get_current_account'), { account_id: 'dbid:x' });
  await c.rpc('/2/files/list_folder', { path: '' });
  s.done();
  const [a, b] = s.requests;
  assert.equal(a!.url, 'https://api.dropboxapi.com/2/users/get_current_account');
  assert.equal(a!.method, 'POST');
  assert.equal(a!.headers.get('authorization'), 'Bearer sl.token1');
  assert.equal(a!.headers.get('content-type'), null);
  assert.equal(a!.headers.get('user-agent'), 'dropkey-test');
  assert.equal(await s.bodies[0], '');
  assert.equal(b!.url, 'https://api.dropboxapi.com/2/files/list_folder');
  assert.equal(b!.headers.get('content-type'), 'application/json');
  assert.equal(await s.bodies[1], '{"path":""}');
});

test('rpc: Void result "null" and empty body decode to null; select-user/admin/path-root headers', async () => {
  const s = script([json(200, null), new Response('', { status: 200 })]);
  const c = new DropboxClient({
    urls: dropboxUrlsFromBase('http://127.0.0.1:1'),
    fetch: s.f,
    getAccessToken: tokens('t').get,
    selectUser: 'dbmid:member',
    pathRoot: { '.tag': 'root', root: '123' },
  });
  assert.equal(await c.rpc('auth/token/revoke'), null);
  assert.equal(await c.rpc('files/get_metadata', { path: '/a' }, { selectUser: null, selectAdmin: 'dbmid:admin' }), null);
  s.done();
  assert.equal(s.requests[0]!.url, 'http://127.0.0.1:1/2/auth/token/revoke');
  assert.equal(s.requests[0]!.headers.get('dropbox-api-select-user'), 'dbmid:member');
  assert.equal(s.requests[0]!.headers.get('dropbox-api-path-root'), '{".tag":"root","root":"123"}');
  assert.equal(s.requests[1]!.headers.get('dropbox-api-select-user'), null);
  assert.equal(s.requests[1]!.headers.get('dropbox-api-select-admin'), 'dbmid:admin');
});

test('longpoll goes to the notify host without a token', async () => {
  const s = script([json(200, { changes: false, backoff: 5 })]);
  const t = tokens('t');
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: t.get });
  assert.deepEqual(await c.rpc('files/list_folder/longpoll', { cursor: 'c', timeout: 30 }), { changes: false, backoff: 5 });
  assert.equal(s.requests[0]!.url, 'https://notify.dropboxapi.com/2/files/list_folder/longpoll');
  assert.equal(s.requests[0]!.headers.get('authorization'), null);
  assert.equal(t.calls.length, 0);
});

test('upload: content host, octet-stream, header-safe Dropbox-API-Arg, bytes in body', async () => {
  const s = script([json(200, { name: 'é.txt', size: 3 })]);
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: tokens('t').get });
  const r = await c.upload('files/upload', { path: '/dé/😀\u007f.txt', mode: 'add' }, new Uint8Array([1, 2, 3]));
  assert.deepEqual(r, { name: 'é.txt', size: 3 });
  const req = s.requests[0]!;
  assert.equal(req.url, 'https://content.dropboxapi.com/2/files/upload');
  assert.equal(req.headers.get('content-type'), 'application/octet-stream');
  const arg = req.headers.get('dropbox-api-arg')!;
  assert.equal(arg, '{"path":"/d\\u00e9/\\ud83d\\ude00\\u007f.txt","mode":"add"}');
  assert.deepEqual(JSON.parse(arg), { path: '/dé/😀\u007f.txt', mode: 'add' });
  assert.deepEqual(new Uint8Array(await req.arrayBuffer()), new Uint8Array([1, 2, 3]));
});

test('upload: web and Node streams are sent', async () => {
  const s = script([
    async (req) => json(200, { got: await req.text() }),
    async (req) => json(200, { got: await req.text() }),
  ]);
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: tokens('t').get });
  const web = new Blob(['hello ', 'web']).stream();
  assert.deepEqual(await c.upload('files/upload', { path: '/a' }, web), { got: 'hello web' });
  assert.deepEqual(await c.upload('files/upload', { path: '/b' }, Readable.from([Buffer.from('node '), Buffer.from('stream')])), {
    got: 'node stream',
  });
  s.done();
});

test('download: result from Dropbox-API-Result, body stream, Range header', async () => {
  const s = script([
    new Response('llo', {
      status: 206,
      headers: { 'dropbox-api-result': '{"name":"caf\\u00e9","size":5}', 'content-range': 'bytes 2-4/5' },
    }),
    new Response('x', { status: 200 }),
  ]);
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: tokens('t').get });
  const d = await c.download<{ name: string }>('files/download', { path: '/café' }, { range: { start: 2, end: 4 } });
  assert.equal(d.result.name, 'café');
  assert.equal(d.status, 206);
  assert.equal(await new Response(d.body).text(), 'llo');
  const req = s.requests[0]!;
  assert.equal(req.url, 'https://content.dropboxapi.com/2/files/download');
  assert.equal(req.headers.get('range'), 'bytes=2-4');
  assert.equal(req.headers.get('dropbox-api-arg'), '{"path":"/caf\\u00e9"}');
  await assert.rejects(c.download('files/download', { path: '/a' }), (e: unknown) => e instanceof DropboxApiError && e.summary === 'invalid_response');
  await assert.rejects(c.download('files/download', { path: '/a' }, { range: { start: 5, end: 2 } }), DropkeyError);
});

test('401 expired_access_token → one forced refresh and one retry', async () => {
  const s = script([json(401, EXPIRED), json(200, { ok: 1 })]);
  const t = tokens('sl.old', 'sl.new');
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: t.get });
  assert.deepEqual(await c.rpc('users/get_current_account'), { ok: 1 });
  s.done();
  assert.deepEqual(t.calls, [{}, { forceRefresh: true, rejectedToken: 'sl.old' }]);
  assert.equal(s.requests[1]!.headers.get('authorization'), 'Bearer sl.new');
});

test('401 expired twice → TOKEN_EXPIRED after exactly one refresh; other 401s are not retried', async () => {
  const s = script([json(401, EXPIRED), json(401, EXPIRED)]);
  const t = tokens('a', 'b');
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: t.get });
  await assert.rejects(c.rpc('users/get_current_account'), (e: unknown) => e instanceof DropboxApiError && e.code === ErrorCodes.TOKEN_EXPIRED);
  s.done();
  assert.equal(t.calls.length, 2);

  const s2 = script([json(401, { error_summary: 'invalid_access_token/', error: { '.tag': 'invalid_access_token' } })]);
  const c2 = new DropboxClient({ urls: DROPBOX_URLS, fetch: s2.f, getAccessToken: tokens('a').get });
  await assert.rejects(c2.rpc('users/get_current_account'), (e: unknown) => e instanceof DropboxApiError && e.status === 401);
  s2.done();
});

test('429 honours Retry-After (header, then JSON) through the injected sleep', async () => {
  const s = script([
    new Response('too many', { status: 429, headers: { 'retry-after': '3' } }),
    json(429, { error_summary: 'too_many_write_operations/', error: { reason: { '.tag': 'too_many_write_operations' }, retry_after: 2 } }, { 'retry-after': '2' }),
    json(200, { ok: true }),
  ]);
  const z = sleeps();
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: tokens('t').get, sleep: z.sleep });
  assert.deepEqual(await c.rpc('files/create_folder_v2', { path: '/x' }), { ok: true });
  s.done();
  assert.deepEqual(z.waits, [3000, 2000]);
});

test('429 with a Retry-After beyond the bound surfaces at once with retryAfter', async () => {
  const s = script([new Response('', { status: 429, headers: { 'retry-after': '3600' } })]);
  const z = sleeps();
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: tokens('t').get, sleep: z.sleep });
  await assert.rejects(c.rpc('files/list_folder', { path: '' }), (e: unknown) => {
    assert.ok(e instanceof DropboxApiError);
    assert.equal(e.code, ErrorCodes.DROPBOX_UNAVAILABLE);
    assert.equal(retryAfterOf(e), 3600);
    return true;
  });
  assert.deepEqual(z.waits, []);
});

test('5xx and network errors: bounded exponential backoff with jitter', async () => {
  const s = script([
    new Response('err', { status: 500 }),
    new TypeError('fetch failed', { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) }),
    new Response('err', { status: 503 }),
    new Response('err', { status: 502 }),
  ]);
  const z = sleeps();
  const c = new DropboxClient({
    urls: DROPBOX_URLS,
    fetch: s.f,
    getAccessToken: tokens('t').get,
    sleep: z.sleep,
    random: () => 0.5,
    maxRetries: 3,
  });
  await assert.rejects(c.rpc('users/get_current_account'), (e: unknown) => {
    assert.ok(e instanceof DropboxApiError);
    assert.equal(e.status, 502);
    assert.equal(e.code, ErrorCodes.DROPBOX_UNAVAILABLE);
    assert.ok(isRetryable(e));
    assert.equal(e.details?.['attempts'], 4);
    return true;
  });
  s.done();
  // step = 500·2^n capped at 10 s; delay = step/2 + step/2·random.
  assert.deepEqual(z.waits, [375, 750, 1500]);
});

test('jitter stays within [step/2, step] and the cap holds', async () => {
  const z = sleeps();
  const steps: Step[] = Array.from({ length: 8 }, () => new Response('', { status: 500 }));
  const s = script(steps);
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: tokens('t').get, sleep: z.sleep, random: () => 0.999, maxRetries: 7 });
  await assert.rejects(c.rpc('check/user', { query: '' }));
  s.done();
  assert.equal(z.waits.length, 7);
  assert.ok(z.waits.every((w) => w <= 10_000));
  assert.equal(z.waits.at(-1), 9995); // 5000 + 5000·0.999, rounded
});

test('stream bodies are never replayed: no retry on 503, no refresh-retry on 401', async () => {
  const s = script([new Response('', { status: 503 })]);
  const z = sleeps();
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: tokens('t').get, sleep: z.sleep });
  await assert.rejects(c.upload('files/upload', { path: '/a' }, new Blob(['x']).stream()), (e: unknown) => isRetryable(e));
  s.done();
  assert.deepEqual(z.waits, []);

  const s2 = script([json(401, EXPIRED)]);
  const t = tokens('a', 'b');
  const c2 = new DropboxClient({ urls: DROPBOX_URLS, fetch: s2.f, getAccessToken: t.get });
  await assert.rejects(c2.upload('files/upload', { path: '/a' }, Readable.from([Buffer.from('x')])), (e: unknown) =>
    e instanceof DropboxApiError && e.code === ErrorCodes.TOKEN_EXPIRED,
  );
  s2.done();
  assert.equal(t.calls.length, 1);

  // A Uint8Array body is replayed.
  const s3 = script([new Response('', { status: 500 }), json(200, { ok: 1 })]);
  const c3 = new DropboxClient({ urls: DROPBOX_URLS, fetch: s3.f, getAccessToken: tokens('t').get, sleep: z.sleep });
  assert.deepEqual(await c3.upload('files/upload', { path: '/a' }, new Uint8Array([7])), { ok: 1 });
  assert.deepEqual(new Uint8Array(await s3.requests[1]!.arrayBuffer()), new Uint8Array([7]));
});

test('409 route errors are decoded, not retried, and the token never appears', async () => {
  const s = script([json(409, { error_summary: 'path/not_found/..', error: { '.tag': 'path', path: { '.tag': 'not_found' } } })]);
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: tokens('sl.SECRET-TOKEN-VALUE').get });
  await assert.rejects(c.rpc('files/get_metadata', { path: '/nope' }), (e: unknown) => {
    assert.ok(e instanceof DropboxApiError);
    assert.equal(e.status, 409);
    assert.equal(e.summary, 'path/not_found/..');
    assert.match(e.message, /no file or folder/);
    assert.ok(!JSON.stringify(e).includes('SECRET-TOKEN'));
    return true;
  });
  s.done();
});

test('cancellation stops retries', async () => {
  const ac = new AbortController();
  const s = script([new Response('', { status: 500 })]);
  const c = new DropboxClient({
    urls: DROPBOX_URLS,
    fetch: s.f,
    getAccessToken: tokens('t').get,
    sleep: async (_ms, signal) => {
      ac.abort();
      if (signal?.aborted) throw signal.reason;
    },
  });
  await assert.rejects(c.rpc('users/get_current_account', undefined, { signal: ac.signal }), (e: unknown) =>
    e instanceof DropkeyError && e.code === ErrorCodes.CANCELLED,
  );
});

test('per-attempt timeout: a hung attempt is retried, then succeeds', async () => {
  const hang: Step = (req) =>
    new Promise<Response>((_res, rej) => req.signal.addEventListener('abort', () => rej(req.signal.reason)));
  const s = script([hang, json(200, { ok: 1 })]);
  const z = sleeps();
  const c = new DropboxClient({ urls: DROPBOX_URLS, fetch: s.f, getAccessToken: tokens('t').get, sleep: z.sleep, timeoutMs: 30 });
  assert.deepEqual(await c.rpc('users/get_current_account'), { ok: 1 });
  s.done();
  assert.equal(z.waits.length, 1);

  const s2 = script([hang]);
  const c2 = new DropboxClient({ urls: DROPBOX_URLS, fetch: s2.f, getAccessToken: tokens('t').get, timeoutMs: 30, maxRetries: 0 });
  await assert.rejects(c2.rpc('users/get_current_account'), (e: unknown) =>
    e instanceof DropkeyError && e.code === ErrorCodes.DROPBOX_UNAVAILABLE && /timed out/.test(e.message),
  );
});
