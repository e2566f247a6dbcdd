/**
 * Token hand-outs and API key use, counted in memory so the token hot path never writes to the database.
 */
import type { ApiKeyRecord } from '../../store/server-types.js';
import type { ServerDeps } from '../deps.js';

/**
 * Token hand-outs and key use, counted in memory and written every flush interval as one `token.handout` audit
 * entry per (key, connection) plus the keys' counters, so the hot path never writes to the database.
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
      await this.deps.serverStore.appendAudit(
        [...handouts.values()].map((h) => ({
          at: now,
          actor: `apikey:${h.keyName}`,
          action: 'token.handout',
          target: h.connection,
          details: { count: h.count },
        })),
      );
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
