/**
 * Unit tests for the proxy's pure parts: route names and hosts, header and query allow-lists, the back-off store.
 * The proxy itself is tested end to end in test/server/proxy.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffKey, MemoryBackoffStore } from './backoff.js';
import { readBounded } from '../../body.js';
import { countBytes, requestHeaders, responseHeaders, upstreamQuery } from './forward.js';
import { isRouteName, routeInfo } from './routes.js';

test('route names: Dropbox route shapes pass; dots, escapes, empty segments and upper case do not', () => {
  for (const ok of ['files/list_folder', 'files/upload_session/append_v2', 'users/get_current_account', 'team/members/list/continue_v2', 'check/user']) {
    assert.ok(isRouteName(ok), ok);
  }
  for (const bad of ['', '/files/x', 'files/', 'files//x', '../x', 'files/..', 'files/%2e%2e', 'files%2Fx', 'Files/x', 'files/x.y', 'files/x?y', 'a b', 'files\\x', `${'a/'.repeat(10)}a`]) {
    assert.ok(!isRouteName(bad), bad);
  }
});

test('route hosts and styles follow the spec: host attribute first, unknown routes are api rpc', () => {
  assert.deepEqual(routeInfo('files/download'), { host: 'content', style: 'download' });
  assert.deepEqual(routeInfo('files/upload_session/finish'), { host: 'content', style: 'upload' });
  assert.deepEqual(routeInfo('files/get_thumbnail_batch'), { host: 'content', style: 'rpc' });
  assert.deepEqual(routeInfo('files/paper/create'), { host: 'api', style: 'upload' });
  assert.deepEqual(routeInfo('files/list_folder/longpoll'), { host: 'notify', style: 'rpc', noauth: true });
  assert.deepEqual(routeInfo('files/upload_session/finish_batch_v2'), { host: 'api', style: 'rpc' });
  assert.deepEqual(routeInfo('users/get_current_account'), { host: 'api', style: 'rpc' });
});

test('request headers: only the allow-list crosses, and fetch is told not to compress', () => {
  const out = requestHeaders(
    new Headers({
      Authorization: 'Bearer dk_caller',
      Cookie: 's=1',
      Host: 'evil.example.com',
      'X-Forwarded-Host': 'evil.example.com',
      Connection: 'keep-alive, X-Secret',
      'X-Secret': '1',
      'Dropbox-API-Arg': '{"path":"/a"}',
      'Dropbox-API-Select-User': 'dbmid:1',
      'Dropbox-API-Select-Admin': 'dbmid:2',
      'Dropbox-API-Path-Root': '{".tag":"home"}',
      'Content-Type': 'application/octet-stream',
      'Content-Length': '3',
      Range: 'bytes=0-1',
      'If-None-Match': '"x"',
    }),
  );
  assert.deepEqual(Object.fromEntries(out), {
    'accept-encoding': 'identity',
    'content-length': '3',
    'content-type': 'application/octet-stream',
    'dropbox-api-arg': '{"path":"/a"}',
    'dropbox-api-path-root': '{".tag":"home"}',
    'dropbox-api-select-admin': 'dbmid:2',
    'dropbox-api-select-user': 'dbmid:1',
    'if-none-match': '"x"',
    range: 'bytes=0-1',
  });
});

test('response headers: Dropbox results and caching facts pass; cookies and hop-by-hop headers do not', () => {
  const out = responseHeaders(
    new Headers({
      'Content-Type': 'application/octet-stream',
      'Content-Length': '10',
      'Dropbox-API-Result': '{}',
      ETag: '"r"',
      'Retry-After': '3',
      'X-Dropbox-Request-Id': 'abc',
      'Set-Cookie': 'x=1',
      'Transfer-Encoding': 'chunked',
      Connection: 'close',
    }),
  );
  assert.deepEqual([...out.keys()].sort(), ['content-length', 'content-type', 'dropbox-api-result', 'etag', 'retry-after', 'x-dropbox-request-id']);
});

test('query: the URL forms pass, the authorization parameter never does', () => {
  assert.equal(upstreamQuery(new URLSearchParams('arg=%7B%7D&authorization=Bearer+x&AUTHORIZATION=y&select_user=dbmid%3A1')), '?arg=%7B%7D&select_user=dbmid%3A1');
  assert.equal(upstreamQuery(new URLSearchParams('')), '');
});

test('readBounded reads small bodies whole and gives up on large ones; countBytes reports every byte once', async () => {
  const body = (parts: number[]) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (const n of parts) c.enqueue(new Uint8Array(n));
        c.close();
      },
    });
  assert.equal((await readBounded(body([3, 4]), 7))?.byteLength, 7);
  assert.equal(await readBounded(body([3, 5]), 7), null);
  let counted = 0;
  const seen: number[] = [];
  const reader = countBytes(body([1 << 20, 1 << 20, 5]), (n) => (counted += n)).getReader();
  for (let r = await reader.read(); !r.done; r = await reader.read()) seen.push(r.value.byteLength);
  assert.deepEqual(seen, [1 << 20, 1 << 20, 5]);
  assert.equal(counted, (2 << 20) + 5);
});

test('back-off store: blocks per key until a moment, never shortened, gone once over', () => {
  const store = new MemoryBackoffStore();
  const key = backoffKey('c1', undefined);
  assert.notEqual(backoffKey('c1', 'dbmid:1'), key);
  store.block(key, { until: 2_000, reason: 'too_many_requests' });
  store.block(key, { until: 1_500, reason: 'too_many_requests' });
  assert.equal(store.get(key, 1_000)?.until, 2_000);
  assert.equal(store.get(backoffKey('c1', 'dbmid:1'), 1_000), undefined);
  store.block(key, { until: 3_000, reason: 'too_many_requests' });
  assert.equal(store.get(key, 2_500)?.until, 3_000);
  assert.equal(store.get(key, 3_000), undefined);
});
