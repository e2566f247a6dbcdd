/**
 * Token hand-outs and API key use, counted in memory so the token hot path never writes to the database.
 */
import type { ApiKeyRecord } from '../../store/server-types.js';
import type { ServerDeps } from '../deps.js';

/** Hand-outs are audited as one counted entry per key, connection and hour (USAGE_BUCKET_MS). */
export const USAGE_BUCKET_MS = 3600_000;
/** Counted entries written per transaction; the flush yields to the event loop between chunks. */
const CHUNK = 500;

/**
 * Token hand-outs and key use, counted in memory and written every flush interval, so the hot path never writes
 * to the database: the keys' counters, and one `token.handout` audit entry per (key, connection, hour) whose
 * details.count each flush adds to (upserted), instead of a new row per pair per flush.
 */
export class UsageRecorder {
  #handouts = new Map<string, { keyId: string; keyName: string; connection: string; count: number }>();
  /** The entry counted last: a client asking again for the same token skips building the map key. */
  #last: { keyId: string; keyName: string; connection: string; count: number } | undefined;
  #lastUsed = new Map<string, number>();
  #flushing: Promise<void> | undefined;

  constructor(private readonly deps: ServerDeps) {}

  used(key: ApiKeyRecord): void {
    this.#lastUsed.set(key.id, this.deps.clock());
  }

  handout(key: ApiKeyRecord, connection: string): void {
    this.#lastUsed.set(key.id, this.deps.clock());
    const last = this.#last;
    if (last !== undefined && last.keyId === key.id && last.connection === connection) last.count++;
    else {
      const k = `${key.id}\u0000${connection}`;
      let cur = this.#handouts.get(k);
      if (cur) cur.count++;
      else this.#handouts.set(k, (cur = { keyId: key.id, keyName: key.name, connection, count: 1 }));
      this.#last = cur;
    }
    this.deps.metrics.tokenHandouts.inc({ connection });
  }

  /** Writes what was counted since the last flush. Concurrent calls share one write. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    if (this.#handouts.size === 0 && this.#lastUsed.size === 0) return;
    const handouts = this.#handouts;
    const lastUsed = this.#lastUsed;
    this.#handouts = new Map();
    this.#last = undefined;
    this.#lastUsed = new Map();
    const perKey = new Map<string, number>();
    for (const h of handouts.values()) perKey.set(h.keyId, (perKey.get(h.keyId) ?? 0) + h.count);
    const now = this.deps.clock();
    try {
      await this.deps.serverStore.recordApiKeyUsage(
        [...lastUsed].map(([id, at]) => ({ id, lastUsedAt: at, tokenHandouts: perKey.get(id) ?? 0 })),
      );
      const bucket = Math.floor(now / USAGE_BUCKET_MS) * USAGE_BUCKET_MS;
      const pending = [...handouts];
      for (let i = 0; i < pending.length; i += CHUNK) {
        if (i > 0) await new Promise<void>((r) => setImmediate(r));
        const chunk = pending.slice(i, i + CHUNK);
        await this.deps.serverStore.addAuditCounts(
          chunk.map(([k, h]) => ({ bucket: `token.handout\u0000${bucket}\u0000${k}`, at: now, actor: `apikey:${h.keyName}`, action: 'token.handout', target: h.connection, count: h.count })),
        );
        // Written: if a later chunk fails, only what is left goes back for the next flush (never counted twice).
        for (const [k] of chunk) handouts.delete(k);
      }
    } catch (err) {
      // Put the counts back so the next flush retries them; counters are facts worth keeping.
      for (const [k, h] of handouts) {
        const cur = this.#handouts.get(k);
        if (cur) cur.count += h.count;
        else this.#handouts.set(k, h);
      }
      for (const [id, at] of lastUsed) if (!this.#lastUsed.has(id)) this.#lastUsed.set(id, at);
      this.deps.logger.error({ err }, 'could not record token hand-outs; will retry');
    }
  }
}
