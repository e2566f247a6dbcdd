/**
 * The SQLite WebhookStore (see ../webhook-types.ts): webhook endpoints, the event outbox and delivery log, and
 * scheduled-job run records, on the driver's connection (./index.ts); its tables come from the driver's one
 * migrator, its row mapping from ../webhook-records.ts (shared with PostgreSQL).
 *
 * IMMEDIATE transactions for read-then-write (claims), driver errors mapped to DROPKEY_STORE naming the operation,
 * never parameter values. Signing secrets are encrypted with the Keyring, bound to their row (AAD), and a CHECK
 * refuses anything that is not a ciphertext.
 */
import type { Keyring } from '../cipher.js';
import type { AttemptOutcome, ClaimedDelivery, DeliveryAttempt, DeliveryRecord, DeliveryStatus, JobRunRecord, NewWebhookEndpoint, NewWebhookEvent, WebhookEndpoint, WebhookStore } from '../webhook-types.js';
import { afterAttempt, ATTEMPT_COLUMNS, deliverySelect, endpointSecretContext as secretCtx, toAttempt, toDelivery, toEndpoint as mapEndpoint, toJobRun, type AttemptRow, type DeliveryRow, type EndpointRowOf, type JobRunRow, randomId, type NewId } from '../webhook-records.js';
import { parseStringList, type SqliteDatabase, type SqliteHandle } from './db.js';

/** Event types are JSON text, `enabled` is 0 or 1. */
type EndpointRow = EndpointRowOf<string, number>;

const DELIVERY_SELECT = deliverySelect({ deliveries: 'webhook_deliveries', events: 'webhook_events', endpoints: 'webhook_endpoints' });

function toEndpoint(r: EndpointRow): WebhookEndpoint {
  return mapEndpoint(r, parseStringList(r.events), r.enabled === 1);
}

export class SqliteWebhookStore implements WebhookStore {
  readonly #h: SqliteHandle;
  readonly #keyring: Keyring;
  readonly #newId: NewId;

  constructor(h: SqliteHandle, keyring: Keyring, newId: NewId = randomId) {
    this.#h = h;
    this.#keyring = keyring;
    this.#newId = newId;
  }

  get #db(): SqliteDatabase {
    return this.#h.db;
  }

  #run<T>(operation: string, work: () => T, immediate = false): T {
    return this.#h.run(operation, work, { immediate });
  }

  // ---- endpoints

  async createEndpoint(e: NewWebhookEndpoint, now: number): Promise<WebhookEndpoint> {
    return this.#run('create a webhook endpoint', () => {
      const id = this.#newId('whe');
      const row: EndpointRow = {
        id,
        url: e.url,
        description: e.description,
        events: JSON.stringify(e.events),
        secret_enc: this.#keyring.encrypt(e.secret, secretCtx(id)),
        enabled: 1,
        created_at: now,
        created_by: e.createdBy,
        updated_at: now,
      };
      this.#db
        .prepare(
          `INSERT INTO webhook_endpoints (id, url, description, events, secret_enc, enabled, created_at, created_by, updated_at)
           VALUES (@id, @url, @description, @events, @secret_enc, @enabled, @created_at, @created_by, @updated_at)`,
        )
        .run(row);
      return toEndpoint(row);
    });
  }

  async listEndpoints(): Promise<WebhookEndpoint[]> {
    return this.#run('list webhook endpoints', () =>
      (this.#db.prepare('SELECT * FROM webhook_endpoints ORDER BY created_at, id').all() as EndpointRow[]).map(toEndpoint),
    );
  }

  async getEndpoint(id: string): Promise<WebhookEndpoint | undefined> {
    return this.#run('read a webhook endpoint', () => {
      const r = this.#db.prepare('SELECT * FROM webhook_endpoints WHERE id = ?').get(id) as EndpointRow | undefined;
      return r && toEndpoint(r);
    });
  }

  async deleteEndpoint(id: string): Promise<boolean> {
    // ON DELETE CASCADE removes its deliveries and attempts: nothing is ever sent to a deleted endpoint.
    return this.#run('delete a webhook endpoint', () => this.#db.prepare('DELETE FROM webhook_endpoints WHERE id = ?').run(id).changes === 1, true);
  }

  // ---- outbox

  async enqueueEvent(event: NewWebhookEvent, now: number, onlyEndpoint?: string): Promise<string[]> {
    return this.#run(
      'queue a webhook event',
      () => {
        const endpoints = (
          onlyEndpoint === undefined
            ? (this.#db.prepare('SELECT id, events FROM webhook_endpoints WHERE enabled = 1').all() as Pick<EndpointRow, 'id' | 'events'>[])
            : (this.#db.prepare('SELECT id, events FROM webhook_endpoints WHERE id = ?').all(onlyEndpoint) as Pick<EndpointRow, 'id' | 'events'>[])
        ).filter((e) => {
          if (onlyEndpoint !== undefined) return true;
          const types = parseStringList(e.events);
          return types.includes('*') || types.includes(event.type);
        });
        if (endpoints.length === 0) return [];
        this.#db
          .prepare('INSERT INTO webhook_events (id, type, connection, at, body) VALUES (?, ?, ?, ?, ?)')
          .run(event.id, event.type, event.connection, event.at, event.body);
        const insert = this.#db.prepare(
          `INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at)
           VALUES (?, ?, ?, 'pending', 0, ?, ?)`,
        );
        const ids: string[] = [];
        for (const e of endpoints) {
          const id = this.#newId('whd');
          insert.run(id, event.id, e.id, now, now);
          ids.push(id);
        }
        return ids;
      },
      true,
    );
  }

  async claimDue(now: number, leaseMs: number, limit: number, ids?: string[]): Promise<ClaimedDelivery[]> {
    return this.#run(
      'claim webhook deliveries',
      () => {
        const free = `d.status = 'pending' AND d.next_attempt_at <= ? AND (d.claimed_until IS NULL OR d.claimed_until <= ?)`;
        const rows =
          ids === undefined
            ? (this.#db.prepare(`${DELIVERY_SELECT} WHERE ${free} ORDER BY d.next_attempt_at, d.created_at LIMIT ?`).all(now, now, limit) as DeliveryRow[])
            : ids.length === 0
              ? []
              : (this.#db
                  .prepare(`${DELIVERY_SELECT} WHERE ${free} AND d.id IN (${ids.map(() => '?').join(',')}) LIMIT ?`)
                  .all(now, now, ...ids, limit) as DeliveryRow[]);
        const claim = this.#db.prepare('UPDATE webhook_deliveries SET claimed_until = ? WHERE id = ?');
        const body = this.#db.prepare('SELECT body FROM webhook_events WHERE id = ?');
        const secret = this.#db.prepare('SELECT secret_enc FROM webhook_endpoints WHERE id = ?');
        return rows.map((r) => {
          claim.run(now + leaseMs, r.id);
          const enc = (secret.get(r.endpoint_id) as { secret_enc: string }).secret_enc;
          return {
            delivery: toDelivery(r),
            body: (body.get(r.event_id) as { body: string }).body,
            secret: this.#keyring.decrypt(enc, secretCtx(r.endpoint_id)),
          };
        });
      },
      true,
    );
  }

  async recordAttempt(deliveryId: string, o: AttemptOutcome): Promise<void> {
    this.#run(
      'record a webhook delivery attempt',
      () => {
        const cur = this.#db.prepare('SELECT attempts FROM webhook_deliveries WHERE id = ?').get(deliveryId) as { attempts: number } | undefined;
        if (!cur) return; // the endpoint was deleted meanwhile
        this.#db
          .prepare('INSERT OR REPLACE INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)')
          .run(deliveryId, o.attempt, o.at, o.statusCode, o.error, o.durationMs);
        this.#db
          .prepare(`UPDATE webhook_deliveries SET ${ATTEMPT_COLUMNS.map((col) => `${col} = ?`).join(', ')}, claimed_until = NULL WHERE id = ?`)
          .run(...afterAttempt(o, cur.attempts), deliveryId);
      },
      true,
    );
  }

  async listDeliveries(query: { endpointId?: string; status?: DeliveryStatus; limit?: number } = {}): Promise<DeliveryRecord[]> {
    return this.#run('list webhook deliveries', () => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (query.endpointId !== undefined) {
        where.push('d.endpoint_id = ?');
        args.push(query.endpointId);
      }
      if (query.status !== undefined) {
        where.push('d.status = ?');
        args.push(query.status);
      }
      const sql = `${DELIVERY_SELECT} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY d.created_at DESC, d.rowid DESC LIMIT ?`;
      return (this.#db.prepare(sql).all(...args, Math.min(Math.max(query.limit ?? 100, 1), 1000)) as DeliveryRow[]).map(toDelivery);
    });
  }

  async getDelivery(id: string): Promise<(DeliveryRecord & { attemptLog: DeliveryAttempt[] }) | undefined> {
    return this.#run('read a webhook delivery', () => {
      const r = this.#db.prepare(`${DELIVERY_SELECT} WHERE d.id = ?`).get(id) as DeliveryRow | undefined;
      if (!r) return undefined;
      const attempts = this.#db
        .prepare('SELECT attempt, at, status_code, error, duration_ms FROM webhook_attempts WHERE delivery_id = ? ORDER BY attempt')
        .all(id) as AttemptRow[];
      return { ...toDelivery(r), attemptLog: attempts.map(toAttempt) };
    });
  }

  async redeliver(id: string, now: number): Promise<boolean> {
    return this.#run(
      'redeliver a webhook',
      () =>
        this.#db
          .prepare(`UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, completed_at = NULL WHERE id = ? AND status != 'pending'`)
          .run(now, id).changes === 1,
      true,
    );
  }

  async nextDueAt(): Promise<number | null> {
    return this.#run('read the next webhook delivery time', () => {
      const r = this.#db
        .prepare(`SELECT MIN(MAX(next_attempt_at, COALESCE(claimed_until, 0))) AS at FROM webhook_deliveries WHERE status = 'pending'`)
        .get() as { at: number | null };
      return r.at;
    });
  }

  async purgeFinished(before: number): Promise<number> {
    return this.#run(
      'purge old webhook deliveries',
      () => {
        const n = this.#db.prepare(`DELETE FROM webhook_deliveries WHERE status != 'pending' AND completed_at < ?`).run(before).changes;
        this.#db.prepare('DELETE FROM webhook_events WHERE at < ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)').run(before);
        return n;
      },
      true,
    );
  }

  // ---- jobs

  async beginJobRun(name: string, now: number, minIntervalMs: number): Promise<boolean> {
    return this.#run(
      'start a job run',
      () => {
        const r = this.#db.prepare('SELECT last_started_at FROM job_runs WHERE name = ?').get(name) as { last_started_at: number | null } | undefined;
        // |now - last|: an instance whose clock runs slightly behind the one that just started the job must skip too.
        if (r?.last_started_at != null && Math.abs(now - r.last_started_at) < minIntervalMs) return false;
        this.#db
          .prepare(
            `INSERT INTO job_runs (name, last_started_at, last_outcome, runs) VALUES (?, ?, 'running', 1)
             ON CONFLICT (name) DO UPDATE SET last_started_at = excluded.last_started_at, last_outcome = 'running', runs = runs + 1`,
          )
          .run(name, now);
        return true;
      },
      true,
    );
  }

  async finishJobRun(name: string, now: number, outcome: 'ok' | 'failed', error: string | null): Promise<void> {
    this.#run('finish a job run', () =>
      this.#db.prepare('UPDATE job_runs SET last_finished_at = ?, last_outcome = ?, last_error = ? WHERE name = ?').run(now, outcome, error, name),
    );
  }

  async listJobRuns(): Promise<JobRunRecord[]> {
    return this.#run('list job runs', () => (this.#db.prepare('SELECT * FROM job_runs ORDER BY name').all() as JobRunRow[]).map(toJobRun));
  }

  // ---- operations

  async reencryptSecrets(): Promise<{ rewritten: number; remaining: number }> {
    const k = this.#keyring;
    return this.#run(
      're-encrypt webhook secrets',
      () => {
        let rewritten = 0;
        let remaining = 0;
        for (const r of this.#db.prepare('SELECT id, secret_enc FROM webhook_endpoints').all() as Pick<EndpointRow, 'id' | 'secret_enc'>[]) {
          if (!k.needsReencrypt(r.secret_enc)) continue;
          const v = k.reencrypt(r.secret_enc, secretCtx(r.id));
          this.#db.prepare('UPDATE webhook_endpoints SET secret_enc = ? WHERE id = ?').run(v, r.id);
          rewritten++;
          if (k.needsReencrypt(v)) remaining++;
        }
        return { rewritten, remaining };
      },
      true,
    );
  }
}
