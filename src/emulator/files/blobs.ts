/**
 * File contents, addressed by content_hash (so copies and identical uploads share bytes), either in memory or as
 * files under `<dataDir>/blobs`. Uploads land in a Staging area first (written chunk by chunk, at byte
 * positions, so concurrent upload sessions work) and become a blob on commit. With a data directory nothing here
 * holds a whole file in memory: writes go straight to disk and reads are file streams.
 */
import { createReadStream, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { link, mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';

export interface Staging {
  /** Writes a chunk at a byte position. */
  write(position: number, chunk: Uint8Array): Promise<void>;
  /** Forgets every byte at or after `size` (a failed request leaves nothing behind). */
  truncate(size: number): Promise<void>;
  /** Bytes [0, size) in order. */
  read(size: number): AsyncIterable<Uint8Array>;
  discard(): Promise<void>;
}

export interface BlobStore {
  stage(): Promise<Staging>;
  /**
   * Makes staged bytes [0, size) available as the blob `hash` (unless it exists already). The staging area stays
   * intact, so a commit that then fails can keep its bytes; callers discard it once the file is written.
   */
  commit(staging: Staging, hash: string, size: number): Promise<void>;
  has(hash: string): boolean;
  /** Bytes [start, end] inclusive of blob `hash`. */
  open(hash: string, start: number, end: number): ReadableStream<Uint8Array>;
  /** Reference counting by file revisions: a blob goes away when its last revision does. */
  ref(hash: string): void;
  unref(hash: string): void;
  /** Drops every blob and staging area. */
  clear(): Promise<void>;
}

const EMPTY = (): ReadableStream<Uint8Array> =>
  new ReadableStream({
    start(c) {
      c.close();
    },
  });

abstract class RefCounts {
  protected readonly refs = new Map<string, number>();
  ref(hash: string): void {
    this.refs.set(hash, (this.refs.get(hash) ?? 0) + 1);
  }
  unref(hash: string): void {
    const n = (this.refs.get(hash) ?? 0) - 1;
    if (n > 0) this.refs.set(hash, n);
    else {
      this.refs.delete(hash);
      this.drop(hash);
    }
  }
  protected abstract drop(hash: string): void;
}

/** One contiguous run of bytes written by one request. */
interface Piece {
  start: number;
  chunks: Buffer[];
  length: number;
}

class MemoryStaging implements Staging {
  /** Keyed by start position: a retried append at the same offset replaces its earlier attempt. */
  readonly pieces = new Map<number, Piece>();
  #last: Piece | undefined;

  async write(position: number, chunk: Uint8Array): Promise<void> {
    const copy = Buffer.from(chunk);
    if (this.#last && this.#last.start + this.#last.length === position && this.pieces.get(this.#last.start) === this.#last) {
      this.#last.chunks.push(copy);
      this.#last.length += copy.length;
      return;
    }
    this.#last = { start: position, chunks: [copy], length: copy.length };
    this.pieces.set(position, this.#last);
  }

  async truncate(size: number): Promise<void> {
    for (const [start, piece] of this.pieces) {
      if (start >= size) this.pieces.delete(start);
      else if (start + piece.length > size) {
        const all = Buffer.concat(piece.chunks).subarray(0, size - start);
        piece.chunks = [Buffer.from(all)];
        piece.length = all.length;
      }
    }
    this.#last = undefined;
  }

  async *read(size: number): AsyncIterable<Uint8Array> {
    let at = 0;
    for (const piece of [...this.pieces.values()].sort((a, b) => a.start - b.start)) {
      let pos = piece.start;
      for (const chunk of piece.chunks) {
        const end = pos + chunk.length;
        if (end > at && pos < size) yield chunk.subarray(Math.max(0, at - pos), Math.min(chunk.length, size - pos));
        at = Math.max(at, Math.min(end, size));
        pos = end;
      }
    }
  }

  async discard(): Promise<void> {
    this.pieces.clear();
  }
}

export class MemoryBlobStore extends RefCounts implements BlobStore {
  readonly #blobs = new Map<string, Buffer[]>();

  async stage(): Promise<Staging> {
    return new MemoryStaging();
  }

  async commit(staging: Staging, hash: string, size: number): Promise<void> {
    if (this.#blobs.has(hash)) return;
    const chunks: Buffer[] = [];
    for await (const chunk of staging.read(size)) chunks.push(Buffer.from(chunk));
    this.#blobs.set(hash, chunks);
  }

  has(hash: string): boolean {
    return this.#blobs.has(hash);
  }

  open(hash: string, start: number, end: number): ReadableStream<Uint8Array> {
    const chunks = this.#blobs.get(hash);
    if (!chunks || end < start) return EMPTY();
    const slices: Uint8Array[] = [];
    let pos = 0;
    for (const chunk of chunks) {
      const next = pos + chunk.length;
      if (next > start && pos <= end) slices.push(chunk.subarray(Math.max(0, start - pos), Math.min(chunk.length, end + 1 - pos)));
      pos = next;
    }
    return Readable.toWeb(Readable.from(slices, { objectMode: false })) as ReadableStream<Uint8Array>;
  }

  protected drop(hash: string): void {
    this.#blobs.delete(hash);
  }

  async clear(): Promise<void> {
    this.#blobs.clear();
    this.refs.clear();
  }
}

class DiskStaging implements Staging {
  #handle: FileHandle | undefined;
  #created = false;
  constructor(readonly file: string) {}

  async #open(): Promise<FileHandle> {
    if (!this.#handle) {
      // Create once; reopening (after a commit closed it) must not truncate what is there.
      this.#handle = await open(this.file, this.#created ? 'r+' : 'w+');
      this.#created = true;
    }
    return this.#handle;
  }

  async write(position: number, chunk: Uint8Array): Promise<void> {
    const handle = await this.#open();
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, position + done);
      done += bytesWritten;
    }
  }

  async truncate(size: number): Promise<void> {
    await (await this.#open()).truncate(size);
  }

  async *read(size: number): AsyncIterable<Uint8Array> {
    if (size === 0) return;
    await this.#open();
    yield* createReadStream(this.file, { start: 0, end: size - 1, highWaterMark: 1 << 20 });
  }

  /** Truncates the file to `size`, closes it and hands back its path. */
  async finish(size: number): Promise<string> {
    const handle = await this.#open();
    await handle.truncate(size);
    await handle.close();
    this.#handle = undefined;
    return this.file;
  }

  async discard(): Promise<void> {
    await this.#handle?.close().catch(() => {});
    this.#handle = undefined;
    await rm(this.file, { force: true });
  }
}

export class DiskBlobStore extends RefCounts implements BlobStore {
  readonly #blobsDir: string;
  readonly #stagingDir: string;
  /** Blobs known to exist on disk (filled at startup, kept in step with commits and drops). */
  readonly #present = new Set<string>();

  private constructor(dir: string) {
    super();
    this.#blobsDir = join(dir, 'blobs');
    this.#stagingDir = join(dir, 'staging');
  }

  /** Opens (creating) the store; staging left over from a previous run is removed (sessions do not survive). */
  static open(dir: string): DiskBlobStore {
    const store = new DiskBlobStore(dir);
    rmSync(store.#stagingDir, { recursive: true, force: true });
    mkdirSync(store.#stagingDir, { recursive: true });
    mkdirSync(store.#blobsDir, { recursive: true });
    for (const name of readdirSync(store.#blobsDir)) store.#present.add(name);
    return store;
  }

  /** Removes blobs no revision references (after metadata was loaded and ref() called for each revision). */
  sweep(): void {
    for (const hash of [...this.#present]) if (!this.refs.has(hash)) this.drop(hash);
  }

  async stage(): Promise<Staging> {
    return new DiskStaging(join(this.#stagingDir, randomBytes(12).toString('hex')));
  }

  async commit(staging: Staging, hash: string, size: number): Promise<void> {
    if (!(staging instanceof DiskStaging)) throw new Error('foreign staging area');
    if (this.#present.has(hash)) return;
    const file = await staging.finish(size);
    // A hard link: instant, no copy, and the staging name stays valid until discarded.
    await link(file, this.#file(hash)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
    this.#present.add(hash);
  }

  has(hash: string): boolean {
    return this.#present.has(hash);
  }

  open(hash: string, start: number, end: number): ReadableStream<Uint8Array> {
    if (end < start) return EMPTY();
    const stream = createReadStream(this.#file(hash), { start, end, highWaterMark: 1 << 20 });
    return Readable.toWeb(stream) as ReadableStream<Uint8Array>;
  }

  #file(hash: string): string {
    return join(this.#blobsDir, hash);
  }

  protected drop(hash: string): void {
    this.#present.delete(hash);
    // Synchronous, so a commit of the same content right after cannot race with a pending unlink.
    rmSync(this.#file(hash), { force: true });
  }

  async clear(): Promise<void> {
    for (const hash of this.#present) await rm(this.#file(hash), { force: true });
    this.#present.clear();
    this.refs.clear();
    await rm(this.#stagingDir, { recursive: true, force: true });
    await mkdir(this.#stagingDir, { recursive: true });
  }
}

/** Bytes gathered before one write: network chunks are small (often 16–64 KiB), disk writes should not be. */
const WRITE_BATCH = 1 << 20;

/** Writes a request's chunks to a staging area from `start` on, in batches of about 1 MiB. */
export class BatchedWriter {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #position: number;

  constructor(
    readonly staging: Staging,
    start: number,
  ) {
    this.#position = start;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes >= WRITE_BATCH) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#pendingBytes === 0) return;
    const data = this.#pending.length === 1 ? (this.#pending[0] as Uint8Array) : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    const at = this.#position;
    this.#position += this.#pendingBytes;
    this.#pendingBytes = 0;
    await this.staging.write(at, data);
  }
}
