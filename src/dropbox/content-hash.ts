/**
 * Dropbox's content_hash (https://www.dropbox.com/developers/reference/content-hash):
 * split the content into 4 MiB blocks, SHA-256 each block, SHA-256 the concatenation of the raw block digests,
 * lower-case hex. The empty file has no blocks, so its hash is SHA-256 of nothing.
 *
 * Pure and dependency-free (node:crypto only): the emulator and the client library both use it.
 */
import { createHash, type Hash } from 'node:crypto';

/** 4 MiB: Dropbox's block size for content_hash. */
export const CONTENT_HASH_BLOCK_SIZE = 4 * 1024 * 1024;

/** Streaming content hasher: feed chunks of any size in order, then call digest() once. */
export class ContentHasher {
  #overall: Hash = createHash('sha256');
  #block: Hash = createHash('sha256');
  /** Bytes fed into the current (unfinished) block. */
  #blockFill = 0;
  #finished = false;

  update(chunk: Uint8Array): this {
    if (this.#finished) throw new Error('ContentHasher.update() called after digest()');
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(CONTENT_HASH_BLOCK_SIZE - this.#blockFill, chunk.length - offset);
      this.#block.update(chunk.subarray(offset, offset + take));
      this.#blockFill += take;
      offset += take;
      if (this.#blockFill === CONTENT_HASH_BLOCK_SIZE) this.#closeBlock();
    }
    return this;
  }

  /** An independent hasher in the same state (e.g. to take a digest mid-stream, or to roll back a failed chunk). */
  copy(): ContentHasher {
    if (this.#finished) throw new Error('ContentHasher.copy() called after digest()');
    const twin = new ContentHasher();
    twin.#overall = this.#overall.copy();
    twin.#block = this.#block.copy();
    twin.#blockFill = this.#blockFill;
    return twin;
  }

  /** The 64-character lower-case hex content hash. The hasher cannot be used afterwards. */
  digest(): string {
    if (this.#finished) throw new Error('ContentHasher.digest() called twice');
    this.#finished = true;
    // A partial last block counts; an empty trailing block (length a multiple of 4 MiB, or empty input) does not.
    if (this.#blockFill > 0) this.#closeBlock();
    return this.#overall.digest('hex');
  }

  #closeBlock(): void {
    // Same composition as combineBlockDigests(), done incrementally so memory stays constant for any size.
    this.#overall.update(this.#block.digest());
    this.#block = createHash('sha256');
    this.#blockFill = 0;
  }
}

/**
 * The final step on its own: SHA-256 over the concatenated raw block digests, lower-case hex. ContentHasher does
 * exactly this incrementally; exported so the composition can be checked against Dropbox's published block hashes.
 */
export function combineBlockDigests(digests: readonly Uint8Array[]): string {
  const overall = createHash('sha256');
  for (const d of digests) overall.update(d);
  return overall.digest('hex');
}

/** content_hash of bytes already in memory. */
export function contentHash(data: Uint8Array): string {
  return new ContentHasher().update(data).digest();
}

/** True when `value` has the shape of a content hash (64 lower-case hex characters). */
export function isContentHash(value: string): boolean {
  return /^[0-9a-f]{64}$/.test(value);
}
