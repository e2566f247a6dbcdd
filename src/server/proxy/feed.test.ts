/**
 * feedBody: how a streamed upload goes from the caller's socket into the upstream request. The caller is paused
 * only once FEED_WINDOW_BYTES wait upstream (memory bounded whatever the body's size) and resumed on 'drain';
 * byte counters are batched and add up exactly; an upstream that ends early stops the feeding; a caller's error
 * destroys the upstream request (a started body is never replayed). Streams stand in for the sockets so the
 * buffering is observed exactly; the node listener path runs end to end in test/server/proxy*.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { PassThrough, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { FEED_WINDOW_BYTES, feedBody } from './transport.js';

const CHUNK = 64 * 1024;

/** An upstream whose writes complete only when released, like a socket whose peer stopped reading. */
function upstream() {
  const held: (() => void)[] = [];
  const received: Buffer[] = [];
  let ended = false;
  const w = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      received.push(chunk);
      held.push(() => cb());
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  return {
    req: w as unknown as ClientRequest,
    w,
    received,
    get ended() {
      return ended;
    },
    release() {
      for (const cb of held.splice(0)) cb();
    },
  };
}

function counters() {
  const calls: number[] = [];
  return { calls, total: () => calls.reduce((a, b) => a + b, 0), c: { upload: (n: number) => void calls.push(n), download: () => {} } };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('feedBody', () => {
  it('pauses the caller once the window waits upstream, resumes on drain, and passes every byte in order', async () => {
    const incoming = new PassThrough({ highWaterMark: CHUNK });
    const up = upstream();
    const count = counters();
    feedBody(incoming as unknown as IncomingMessage, up.req, count.c);
    const chunks = Array.from({ length: 40 }, (_, i) => Buffer.alloc(CHUNK, i));
    for (const c of chunks) incoming.write(c);
    await tick();
    // Paused at the window: what waits upstream is the window plus at most the chunk that crossed it.
    assert.equal(incoming.isPaused(), true);
    assert.ok(up.w.writableLength >= FEED_WINDOW_BYTES && up.w.writableLength < FEED_WINDOW_BYTES + CHUNK, `${up.w.writableLength}`);
    while (up.received.length < chunks.length) {
      up.release();
      await tick();
      await tick();
    }
    incoming.end();
    up.release();
    await tick();
    await tick();
    assert.equal(up.ended, true);
    assert.deepEqual(Buffer.concat(up.received), Buffer.concat(chunks));
    // Counted in batches of about 1 MiB, not once per read, and exactly.
    assert.equal(count.total(), 40 * CHUNK);
    assert.ok(count.calls.length <= Math.ceil((40 * CHUNK) / (1024 * 1024)) + 1, `${count.calls.length} counter updates`);
  });

  it('does not pause while the upstream keeps up', async () => {
    const incoming = new PassThrough();
    const w = new Writable({ write: (_c, _e, cb) => cb() });
    const count = counters();
    feedBody(incoming as unknown as IncomingMessage, w as unknown as ClientRequest, count.c);
    let paused = 0;
    incoming.on('pause', () => paused++);
    for (let i = 0; i < 64; i++) incoming.write(Buffer.alloc(CHUNK));
    incoming.end();
    await new Promise((r) => w.once('finish', r));
    assert.equal(paused, 0);
    assert.equal(count.total(), 64 * CHUNK);
  });

  it('an upstream that closes early stops the feeding and flushes the count of what it took', async () => {
    const incoming = new PassThrough();
    const up = upstream();
    const count = counters();
    feedBody(incoming as unknown as IncomingMessage, up.req, count.c);
    incoming.write(Buffer.alloc(1000));
    await tick();
    up.w.destroy();
    await tick();
    assert.equal(incoming.listenerCount('data'), 0);
    assert.equal(count.total(), 1000);
    // Later bytes are not written to the closed request.
    incoming.write(Buffer.alloc(10));
    await tick();
    assert.equal(up.received.length, 1);
  });

  it("a failing caller body destroys the upstream request with the caller's error", async () => {
    const incoming = new PassThrough();
    const up = upstream();
    feedBody(incoming as unknown as IncomingMessage, up.req, counters().c);
    incoming.write(Buffer.alloc(10));
    await tick();
    const err = new Error('aborted');
    const seen = new Promise<Error>((r) => up.w.once('error', r));
    incoming.destroy(err);
    assert.equal(await seen, err);
    assert.equal(up.w.destroyed, true);
  });
});
