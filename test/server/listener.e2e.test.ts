/**
 * The Node listener (node.ts) over real sockets: request bodies that stall are cut after an idle time between
 * chunks, long but steady bodies are not; a client that goes away mid-body is logged as an abort, not as a 500.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import type { ServerApp } from '../../src/server/app.js';
import { bind, type Listener } from '../../src/server/node.js';
import { makeServerRig, type ServerRig } from './rig.js';

let rig: ServerRig;
let listener: Listener & { setApp(app: ServerApp): void };
let key: string;
const IDLE_MS = 1_000;

before(async () => {
  rig = await makeServerRig();
  await rig.connection('c1');
  key = await rig.key(['proxy'], ['c1'], 'proxy-c1');
  listener = await bind(0, '127.0.0.1', { bodyIdleTimeoutMs: IDLE_MS });
  listener.setApp(rig.app);
});
after(async () => {
  await listener?.close(0);
  await rig?.close();
});

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(listener.port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

function head(path: string, length: number): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
}

/** Everything the server sends until it closes the connection. */
function untilClosed(s: Socket): Promise<string> {
  let text = '';
  s.setEncoding('utf8').on('data', (d: string) => (text += d));
  return new Promise((resolve) => s.once('close', () => resolve(text)));
}

test('item 5: a request body that stalls is cut after the idle timeout with a 408', { timeout: 20_000 }, async () => {
  const s = await open();
  const closed = untilClosed(s);
  const started = performance.now();
  s.write(head('/proxy/c1/2/files/list_folder', 100) + '{"path":');
  const answer = await closed;
  const ms = performance.now() - started;
  assert.match(answer, /^HTTP\/1\.1 408 /);
  assert.ok(ms >= IDLE_MS * 0.9, `cut after ${ms} ms`);
});

test('item 5: a body that keeps arriving is not cut, however long it takes in total', async () => {
  const body = JSON.stringify({ path: '', limit: 1, pad: ' '.repeat(60) });
  const s = await open();
  let text = '';
  s.setEncoding('utf8').on('data', (d: string) => (text += d));
  s.write(head('/proxy/c1/2/files/list_folder', body.length));
  // One byte every 20 ms: the whole body takes several idle periods, but no gap comes near one.
  for (const ch of body) {
    s.write(ch);
    await new Promise((r) => setTimeout(r, 20));
  }
  // The answer may already be here (it can arrive during the last 20 ms pause): look before waiting for more.
  const complete = (): boolean => /\r\n\r\n[\s\S]*\}/.test(text);
  if (!complete()) await new Promise<void>((resolve) => s.on('data', () => (complete() ? resolve() : undefined)));
  assert.match(text, /^HTTP\/1\.1 200 /);
  s.destroy();
});

test('item 5: a client that goes away mid-body is logged as an abort, not as a failure with a stack', async () => {
  const before = rig.logs.length;
  const { proxyRequests } = rig.app.services.metrics;
  const aborts = proxyRequests.get({ connection: 'c1', status: '499' });
  const s = await open();
  s.write(head('/proxy/c1/2/files/list_folder', 100) + '{"pa');
  await new Promise((r) => setTimeout(r, 50));
  s.destroy();
  // Wait for the server to log the request's end.
  for (let i = 0; i < 200 && !rig.logs.slice(before).some((l) => /"path":"\/proxy\/c1\/2\/files\/list_folder"/.test(l)); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const lines = rig.logs.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(lines.some((l) => l['msg'] === 'client went away' || l['aborted'] === true), JSON.stringify(lines));
  assert.ok(!lines.some((l) => l['msg'] === 'request failed' || l['stack'] !== undefined), JSON.stringify(lines));
  assert.ok(!lines.some((l) => l['status'] === 500), JSON.stringify(lines));
  assert.equal(proxyRequests.get({ connection: 'c1', status: '500' }), 0);
  assert.equal(proxyRequests.get({ connection: 'c1', status: '499' }), aborts + 1);
});
