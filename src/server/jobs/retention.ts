/**
 * Audit retention (docs/deploying.md "Audit log retention"): entries older than the retention are deleted in
 * bounded batches, each its own short transaction, with a turn of the event loop between them, so pruning a
 * large backlog never holds the database or the server for long.
 */
import type { ServerStore } from '../../store/server-types.js';

export async function pruneAudit(
  store: Pick<ServerStore, 'pruneAudit'>,
  o: { before: number; batch?: number; maxBatches?: number; signal?: AbortSignal },
): Promise<number> {
  const batch = Math.max(1, o.batch ?? 1000);
  let total = 0;
  for (let i = 0; i < (o.maxBatches ?? 1000) && !o.signal?.aborted; i++) {
    const n = await store.pruneAudit(o.before, batch);
    total += n;
    if (n < batch) break;
    await new Promise<void>((r) => setImmediate(r));
  }
  return total;
}
