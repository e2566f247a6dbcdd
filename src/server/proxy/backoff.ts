/**
 * Shared 429 back-off for the proxy (docs/proxy.md: "waits out Retry-After and shares that back-off with every caller
 * of the connection"). When Dropbox answers `too_many_requests` for a connection, every later request for it
 * waits until the Retry-After moment before going upstream, instead of each caller discovering the limit itself.
 *
 * Dropbox applies rate limits per access token: per user, per team for team routes, and per member when a team
 * token acts as a member (https://www.dropbox.com/developers/reference/data-ingress-guide), so the key is the connection, plus the selected member when the
 * request carries Dropbox-API-Select-User. `too_many_write_operations` is namespace lock contention, not a rate
 * limit of the token: it is retried by the request that met it and not shared.
 *
 * BackoffStore is the seam for docs/decisions/0002-postgres-store.md (several instances): a store-backed implementation shares the same
 * "blocked until" moments across processes. The in-memory one below serves a single process.
 */

export type RateLimitReason = 'too_many_requests' | 'too_many_write_operations';

export interface BackoffState {
  /** Epoch ms before which no request for the key may go upstream. */
  until: number;
  reason: RateLimitReason;
}

export interface BackoffStore {
  /** The block in force for the key at `now`, or undefined. */
  get(key: string, now: number): Promise<BackoffState | undefined> | BackoffState | undefined;
  /** Blocks the key until `until` (an earlier moment never shortens a block already in force). */
  block(key: string, state: BackoffState): Promise<void> | void;
}

export function backoffKey(connection: string, selectUser: string | undefined): string {
  return selectUser ? `${connection}\u0000${selectUser}` : connection;
}

/** One process's blocks, dropped once they are over. */
export class MemoryBackoffStore implements BackoffStore {
  readonly #blocks = new Map<string, BackoffState>();

  get(key: string, now: number): BackoffState | undefined {
    const b = this.#blocks.get(key);
    if (!b) return undefined;
    if (b.until <= now) {
      this.#blocks.delete(key);
      return undefined;
    }
    return b;
  }

  block(key: string, state: BackoffState): void {
    const cur = this.#blocks.get(key);
    if (cur && cur.until >= state.until) return;
    // Blocks last seconds; a bound keeps a flood of distinct Select-User values from growing the map forever.
    if (this.#blocks.size >= 10_000) this.#blocks.clear();
    this.#blocks.set(key, state);
  }
}
