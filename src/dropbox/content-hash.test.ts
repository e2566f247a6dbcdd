import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { CONTENT_HASH_BLOCK_SIZE, ContentHasher, combineBlockDigests, contentHash, isContentHash } from './content-hash.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest();

/** The composition rule written out independently: SHA-256 over the raw SHA-256 digests of each 4 MiB block. */
function reference(data: Uint8Array): string {
  const digests: Buffer[] = [];
  for (let i = 0; i < data.length; i += CONTENT_HASH_BLOCK_SIZE) {
    digests.push(sha256(data.subarray(i, i + CONTENT_HASH_BLOCK_SIZE)));
  }
  return createHash('sha256').update(Buffer.concat(digests)).digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
function bytes(length: number, seed = 1): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

test('block size is 4 MiB', () => {
  assert.equal(CONTENT_HASH_BLOCK_SIZE, 4_194_304);
});

test('empty file hashes to SHA-256 of nothing (https://www.dropbox.com/developers/reference/content-hash)', () => {
  assert.equal(contentHash(new Uint8Array()), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(new ContentHasher().digest(), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test('a short file is SHA-256 of the single block digest, not of the content', () => {
  const data = Buffer.from('hello dropbox');
  const expected = createHash('sha256').update(sha256(data)).digest('hex');
  assert.equal(contentHash(data), expected);
  assert.notEqual(contentHash(data), createHash('sha256').update(data).digest('hex'));
});

test('block boundaries: exactly 4 MiB is one block, 4 MiB + 1 is two', () => {
  const data = bytes(CONTENT_HASH_BLOCK_SIZE + 1, 7);
  const one = data.subarray(0, CONTENT_HASH_BLOCK_SIZE);
  assert.equal(contentHash(one), createHash('sha256').update(sha256(one)).digest('hex'));
  const two = createHash('sha256')
    .update(Buffer.concat([sha256(one), sha256(data.subarray(CONTENT_HASH_BLOCK_SIZE))]))
    .digest('hex');
  assert.equal(contentHash(data), two);
  assert.equal(contentHash(data), reference(data));
  // An exact multiple adds no empty trailing block.
  const eight = bytes(2 * CONTENT_HASH_BLOCK_SIZE, 9);
  assert.equal(contentHash(eight), reference(eight));
});

test('chunking across block boundaries gives the one-shot hash', () => {
  const data = bytes(2 * CONTENT_HASH_BLOCK_SIZE + 12_345, 3);
  const expected = reference(data);
  for (const chunk of [1 << 20, CONTENT_HASH_BLOCK_SIZE - 1, CONTENT_HASH_BLOCK_SIZE, CONTENT_HASH_BLOCK_SIZE + 1, 999_983]) {
    const h = new ContentHasher();
    for (let i = 0; i < data.length; i += chunk) h.update(data.subarray(i, i + chunk));
    assert.equal(h.digest(), expected, `chunk size ${chunk}`);
  }
  // Irregular chunks, including empty ones.
  const h = new ContentHasher();
  let i = 0;
  for (const n of [0, 3, CONTENT_HASH_BLOCK_SIZE - 3, 0, 1, 5_000_000]) {
    h.update(data.subarray(i, i + n));
    i += n;
  }
  h.update(data.subarray(i));
  assert.equal(h.digest(), expected);
});

test("Dropbox's published vector: the image's block hashes compose to its content_hash", () => {
  // Dropbox's content-hash reference (www.dropbox.com/developers/reference/content-hash) publishes, for
  // milky-way-nasa.jpg (9,711,423 bytes), the three block hashes and the file's hash. The image itself cannot be
  // fetched here; its published block hashes can be, and they must compose to the published file hash.
  const blocks = [
    '2a846fa617c3361fc117e1c5c1e1838c336b6a5cef982c1a2d9bdf68f2f1992a', // 4,194,304 bytes
    'c68469027410ea393eba6551b9fa1e26db775f00eae70a0c3c129a0011a39cf9', // 4,194,304 bytes
    '7376192de020925ce6c5ef5a8a0405e931b0a9a8c75517aacd9ca24a8a56818b', // 1,322,815 bytes
  ].map((h) => Buffer.from(h, 'hex'));
  assert.equal(Math.ceil(9_711_423 / CONTENT_HASH_BLOCK_SIZE), 3);
  assert.equal(combineBlockDigests(blocks), '485291fa0ee50c016982abbfa943957bcd231aae0492ccbaa22c58e3997b35e0');
  // ...and the streaming hasher composes its own blocks the same way on data of the same shape.
  const data = bytes(9_711_423, 11);
  const own = [0, 1, 2].map((i) => sha256(data.subarray(i * CONTENT_HASH_BLOCK_SIZE, (i + 1) * CONTENT_HASH_BLOCK_SIZE)));
  assert.equal(contentHash(data), combineBlockDigests(own));
  assert.equal(contentHash(data), reference(data));
});

test('copy() forks the state: both halves finish independently', () => {
  const data = bytes(CONTENT_HASH_BLOCK_SIZE + 100, 5);
  const h = new ContentHasher().update(data.subarray(0, CONTENT_HASH_BLOCK_SIZE + 10));
  const fork = h.copy();
  assert.equal(fork.digest(), reference(data.subarray(0, CONTENT_HASH_BLOCK_SIZE + 10)));
  assert.equal(h.update(data.subarray(CONTENT_HASH_BLOCK_SIZE + 10)).digest(), reference(data));
});

test('misuse is refused loudly', () => {
  const h = new ContentHasher();
  h.digest();
  assert.throws(() => h.update(Buffer.from('x')));
  assert.throws(() => h.digest());
  assert.equal(isContentHash('E3B0'), false);
});
