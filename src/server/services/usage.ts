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
 * Token hand-outs and key use, counted in memory so the hot path never writes to the database:
 * - the keys' counters (last use, hand-outs) are written at every tick (the flush interval, 5 s by default);
 * - hand-outs are audited as one `token.handout` entry per (key, connection, hour) whose details.count is added to
 *   (upserted). Those upserts are one per pair in use, so at 10,000 connections in use they are the costly part:
 *   ticks write them only every `auditEveryTicks` ticks (a minute by default). flush() writes everything now (before
 *   the audit log or the keys are read, and at stop), so what is read is always complete; a crash loses at most
 *   that minute of hand-out counts, never an audit entry of an action.
 */
export class UsageRecorder {
  /** Per key id, per connection (nested, so a hand-out builds no map key: the name's string is the key). */
  #handouts = new Map<string, Map<string, Handout>>();
  #pendingPairs = 0;
  /** Changes each time the counted pairs are taken for writing: a slot's record from before is not counted to. */
  #epoch = 0;
  /** Per key: hand-outs not yet added to its counter, and its last use. Objects live as long as the process. */
  readonly #keys = new Map<string, KeyUsage>();
  #flushing: Promise<void> | undefined;
  #ticks = 0;

  constructor(private readonly deps: ServerDeps, private readonly auditEveryTicks = 12) {}

  #key(key: ApiKeyRecord): KeyUsage {
    let k = this.#keys.get(key.id);
    if (!k) this.#keys.set(key.id, (k = { id: key.id, pending: 0, lastUsedAt: 0, dirty: false }));
    return k;
  }

  used(key: ApiKeyRecord): void {
    const k = this.#key(key);
    k.lastUsedAt = this.deps.clock();
    k.dirty = true;
  }

  /**
   * Counts one hand-out of `connection`'s token to `key`. `slot` (TokenService's cached token passes itself) keeps
   * the pair's record between hand-outs, so the next hand-out of that token to the same key finds it without a
   * lookup: with thousands of connections in use, lookups in maps that large are most of what counting costs.
   */
  handout(key: ApiKeyRecord, connection: string, slot?: HandoutSlot): void {
    let cur = slot?.handout;
    if (cur === undefined || cur.epoch !== this.#epoch || cur.keyId !== key.id || cur.connection !== connection) {
      cur = this.#pair(key, connection);
      if (slot) slot.handout = cur;
    }
    cur.count++;
    cur.key.pending++;
    cur.key.lastUsedAt = this.deps.clock();
    cur.key.dirty = true;
    cur.metric.value++;
  }

  #pair(key: ApiKeyRecord, connection: string): Handout {
    let perKey = this.#handouts.get(key.id);
    if (!perKey) this.#handouts.set(key.id, (perKey = new Map()));
    let cur = perKey.get(connection);
    if (!cur) {
      const metric = this.deps.metrics.tokenHandouts.series({ connection });
      perKey.set(connection, (cur = { keyId: key.id, keyName: key.name, connection, count: 0, key: this.#key(key), metric, epoch: this.#epoch }));
      this.#pendingPairs++;
    }
    return cur;
  }

  /** The periodic write: the keys' counters, and the audit counts every auditEveryTicks ticks. */
  tick(): Promise<void> {
    return this.#run(++this.#ticks % this.auditEveryTicks === 0);
  }

  /** Writes everything counted so far. Concurrent calls share one write. */
  flush(): Promise<void> {
    return this.#run(true);
  }

  async #run(audit: boolean): Promise<void> {
    while (this.#flushing) await this.#flushing;
    this.#flushing = this.#flush(audit).finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flush(audit: boolean): Promise<void> {
    const keys = [...this.#keys.values()].filter((k) => k.dirty);
    if (keys.length > 0) {
      const written = keys.map((k) => ({ k, pending: k.pending }));
      for (const k of keys) k.dirty = false;
      try {
        await this.deps.serverStore.recordApiKeyUsage(written.map(({ k, pending }) => ({ id: k.id, lastUsedAt: k.lastUsedAt, tokenHandouts: pending })));
        // Hand-outs counted while the write was under way stay pending for the next one.
        for (const { k, pending } of written) k.pending -= pending;
      } catch (err) {
        for (const k of keys) k.dirty = true;
        this.deps.logger.error({ err }, 'could not record API key use; will retry');
        return;
      }
    }
    if (!audit || this.#pendingPairs === 0) return;
    const handouts = new Map<string, Handout>();
    for (const perKey of this.#handouts.values()) for (const h of perKey.values()) handouts.set(`${h.keyId}\u0000${h.connection}`, h);
    this.#handouts = new Map();
    this.#pendingPairs = 0;
    this.#epoch++;
    const now = this.deps.clock();
    try {
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
      for (const h of handouts.values()) {
        let perKey = this.#handouts.get(h.keyId);
        if (!perKey) this.#handouts.set(h.keyId, (perKey = new Map()));
        const cur = perKey.get(h.connection);
        if (cur) cur.count += h.count;
        else {
          h.epoch = this.#epoch;
          perKey.set(h.connection, h);
          this.#pendingPairs++;
        }
      }
      this.deps.logger.error({ err }, 'could not record token hand-outs; will retry');
    }
  }
}

interface KeyUsage {
  id: string;
  /** Hand-outs not yet written to the key's counter. */
  pending: number;
  lastUsedAt: number;
  /** Something to write. */
  dirty: boolean;
}

/** The record of one (key, connection) pair being counted. */
export interface Handout {
  keyId: string;
  keyName: string;
  connection: string;
  count: number;
  key: KeyUsage;
  /** The pair's series of dropkey_token_handouts_total. */
  metric: { value: number };
  /** UsageRecorder's epoch when the record was put in its map. */
  epoch: number;
}

/** Where a caller keeps the record of the pair it counted last (see UsageRecorder.handout). */
export interface HandoutSlot {
  handout?: Handout | undefined;
}
