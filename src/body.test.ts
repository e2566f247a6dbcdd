import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readBounded } from './body.js';
import { readBody } from './emulator/wire.js';

/** A stream of the given chunks; `cancelled` says whether the reader gave up on it. */
function chunks(...parts: string[]): { stream: ReadableStream<Uint8Array>; cancelled: () => boolean } {
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      const next = parts.shift();
      if (next === undefined) c.close();
      else c.enqueue(new TextEncoder().encode(next));
    },
    cancel() {
      cancelled = true;
    },
  });
  return { stream, cancelled: () => cancelled };
}

test('the one bounded reader: the whole body up to the limit, nothing past it (stream cancelled)', async () => {
  const exact = chunks('ab', 'cd', 'e');
  assert.equal(Buffer.from((await readBounded(exact.stream, 5))!).toString('utf8'), 'abcde');
  assert.equal(exact.cancelled(), false);
  const over = chunks('ab', 'cd', 'ef', 'never read');
  assert.equal(await readBounded(over.stream, 5), null);
  assert.equal(over.cancelled(), true);
  assert.equal((await readBounded(chunks().stream, 5))!.byteLength, 0);
});

test('the emulator reads request bodies with the same reader: no body is empty, too large is undefined', async () => {
  assert.deepEqual(await readBody(null, 5), new Uint8Array(0));
  assert.equal(Buffer.from((await readBody(chunks('{"a":', '1}').stream, 7))!).toString('utf8'), '{"a":1}');
  const over = chunks('{"a":', '12}');
  assert.equal(await readBody(over.stream, 7), undefined);
  assert.equal(over.cancelled(), true);
});
