/**
 * A 429 back-off shared by every instance on one database (docs/deploying.md ("What the cluster guarantees")): the store-backed BackoffStore that
 * backoff.ts leaves room for. When Dropbox answers too_many_requests to one instance, the "blocked until" moment
 * goes to a small table (the store's BackoffTable: `proxy_backoff`, owned by each driver's migrator); every instance
 * consults it before sending a request for that connection upstream, so a caller on another instance waits out the
 * same Retry-After instead of meeting the limit again (Dropbox limits per token, https://www.dropbox.com/developers/reference/data-ingress-guide).
 *
 * Reads are one primary-key lookup per proxied request, skipped while this instance already knows a block is in
 * force. When the database cannot be reached, the back-off degrades to this instance's memory (never an error
 * for the caller: the proxy must keep working while PostgreSQL restarts, and Dropbox repeats its 429 if needed).
 */
import type { BackoffTable } from '../../store/types.js';
import { MemoryBackoffStore, type BackoffState, type BackoffStore, type RateLimitReason } from './backoff.js';

export type { BackoffTable } from '../../store/types.js';

/** How long the table is skipped after it failed to answer. */
export const RETRY_AFTER_FAILURE_MS = 5_000;

export interface SharedBackoffOptions {
  clock?: () => number;
  /** Told once per failure streak when the table cannot be reached (the proxy keeps the memory back-off). */
  onError?: (err: unknown) => void;
}

export class SharedBackoffStore implements BackoffStore {
  readonly #table: BackoffTable;
  readonly #local = new MemoryBackoffStore();
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  #failing = false;
  /** After a failure, the table is left alone until then (no proxied request waits on a dead database). */
  #retryAt = 0;

  constructor(table: BackoffTable, options: SharedBackoffOptions = {}) {
    this.#table = table;
    this.#clock = options.clock ?? Date.now;
    this.#onError = options.onError ?? (() => {});
  }

  async get(key: string, now: number): Promise<BackoffState | undefined> {
    const known = this.#local.get(key, now);
    if (known) return known;
    if (this.#clock() < this.#retryAt) return undefined;
    try {
      const row = await this.#table.get(key, now);
      this.#ok();
      const b: BackoffState | undefined = row && { until: row.until, reason: reasonOf(row.reason) };
      if (b) this.#local.block(key, b);
      return b;
    } catch (err) {
      this.#fail(err);
      return undefined;
    }
  }

  async block(key: string, state: BackoffState): Promise<void> {
    this.#local.block(key, state);
    if (this.#clock() < this.#retryAt) return;
    try {
      await this.#table.block(key, state, this.#clock());
      this.#ok();
    } catch (err) {
      this.#fail(err);
    }
  }

  #ok(): void {
    this.#failing = false;
  }

  #fail(err: unknown): void {
    if (!this.#failing) this.#onError(err);
    this.#failing = true;
    this.#retryAt = this.#clock() + RETRY_AFTER_FAILURE_MS;
  }
}

function reasonOf(v: string): RateLimitReason {
  return v === 'too_many_write_operations' ? v : 'too_many_requests';
}
