/**
 * Dropbox's content_hash, computed independently of dropkey's own implementation so tests can check the emulator
 * (and dropkey) against the published algorithm, https://www.dropbox.com/developers/reference/content-hash:
 * split into 4 MiB blocks, SHA-256 each block, concatenate the raw digests, SHA-256 the concatenation, hex.
 * An empty input has no blocks, so its hash is SHA-256 of nothing (e3b0c442...b855).
 */
import { createHash } from 'node:crypto';

export const BLOCK_SIZE = 4 * 1024 * 1024;

export function blockDigests(data: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += BLOCK_SIZE) {
    out.push(createHash('sha256').update(data.subarray(off, Math.min(off + BLOCK_SIZE, data.length))).digest());
  }
  return out;
}

export function dropboxContentHash(data: Uint8Array): string {
  return createHash('sha256').update(Buffer.concat(blockDigests(data))).digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce and no test depends on a random seed. */
export function patternBytes(size: number, seed = 0x9e3779b9): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  for (; i < size; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}
