import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Hono } from 'hono';
import { readJsonObject, type AppEnv } from './context.js';
import { mapError } from './errors.js';
import { readForm } from './ui/kit.js';

/** A body stream of `total` bytes in 16 KiB chunks that counts how much of it was pulled. */
function countingBody(total: number): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(ctl) {
      if (sent >= total) return ctl.close();
      const n = Math.min(16 * 1024, total - sent);
      sent += n;
      ctl.enqueue(new Uint8Array(n).fill(0x61));
    },
  });
  return { stream, pulled: () => sent };
}

const app = new Hono<AppEnv>();
app.post('/json', async (c) => c.json(await readJsonObject(c)));
app.post('/form', async (c) => c.json(Object.fromEntries(await readForm(c))));
app.onError((err, c) => {
  const m = mapError(err);
  return c.json({ error: m.body }, m.status as 400);
});

const send = (path: string, type: string, body: ReadableStream<Uint8Array> | string) =>
  app.request(path, { method: 'POST', headers: { 'content-type': type }, body, ...(typeof body === 'string' ? {} : { duplex: 'half' }) } as RequestInit);

for (const [path, type] of [
  ['/json', 'application/json'],
  ['/form', 'application/x-www-form-urlencoded'],
] as const) {
  test(`${path}: a chunked body over 64 KiB is refused with 413 after reading little more than the limit`, async () => {
    const { stream, pulled } = countingBody(20 * 1024 * 1024);
    const res = await send(path, type, stream);
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'DROPKEY_PAYLOAD_TOO_LARGE');
    assert.ok(pulled() < 128 * 1024, `read ${pulled()} bytes of a 20 MiB body`);
  });
}

test('bodies within the limit still parse', async () => {
  assert.deepEqual(await (await send('/json', 'application/json', '{"a":1}')).json(), { a: 1 });
  assert.deepEqual(await (await send('/form', 'application/x-www-form-urlencoded', 'a=b&c=d')).json(), { a: 'b', c: 'd' });
  const res = await send('/json', 'application/json', '[1]');
  assert.equal(res.status, 400);
});
