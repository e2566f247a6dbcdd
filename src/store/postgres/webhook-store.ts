/**
 * The PostgreSQL WebhookStore (see ../webhook-types.ts) on the driver's pool (./index.ts), mirroring the SQLite one
 * (../sqlite/webhook-store.ts); row mapping is ../webhook-records.ts's, tables come from the driver's one migrator.
 *
 * What several instances need from it:
 * - claimDue takes due deliveries with `FOR UPDATE SKIP LOCKED` and stamps the claim in the same transaction, so
 *   workers on different instances never claim the same delivery and never wait on each other's rows;
 * - beginJobRun reads and writes the job's row under a row lock (INSERT ... ON CONFLICT, then SELECT ... FOR UPDATE),
 *   so two instances starting the same job in one period get one "go ahead".
 * Signing secrets are encrypted with the Keyring with the same AAD as SQLite, and a CHECK refuses plain text.
 */
import type { Keyring } from '../cipher.js';
import type { AttemptOutcome, ClaimedDelivery, DeliveryAttempt, DeliveryRecord, DeliveryStatus, JobRunRecord, NewWebhookEndpoint, NewWebhookEvent, WebhookEndpoint, WebhookStore } from '../webhook-types.js';
import { afterAttempt, ATTEMPT_COLUMNS, deliverySelect, endpointSecretContext as secretCtx, toAttempt, toDelivery, toEndpoint as mapEndpoint, toJobRun, type AttemptRow, type DeliveryRow, type EndpointRowOf, type JobRunRow, randomId, type NewId } from '../webhook-records.js';
import type { PgDatabase, Queryable } from './db.js';
import { quoteIdent } from './migrations.js';

/** Event types are text[], `enabled` is boolean. */
type EndpointRow = EndpointRowOf<string[], boolean>;

function toEndpoint(r: EndpointRow): WebhookEndpoint {
  return mapEndpoint(r, [...r.events], r.enabled);
}

export class PgWebhookStore implements WebhookStore {
  readonly #db: PgDatabase;
  readonly #keyring: Keyring;
  readonly #newId: NewId;
  readonly #t: Record<'endpoints' | 'events' | 'deliveries' | 'attempts' | 'jobs', string>;
  readonly #deliverySelect: string;

  constructor(db: PgDatabase, schema: string, keyring: Keyring, newId: NewId = randomId) {
    this.#db = db;
    this.#keyring = keyring;
    this.#newId = newId;
    const s = quoteIdent(schema);
    this.#t = {
      endpoints: `${s}.webhook_endpoints`,
      events: `${s}.webhook_events`,
      deliveries: `${s}.webhook_deliveries`,
      attempts: `${s}.webhook_attempts`,
      jobs: `${s}.job_runs`,
    };
    this.#deliverySelect = deliverySelect(this.#t);
  }

  // ---- endpoints

  async createEndpoint(e: NewWebhookEndpoint, now: number): Promise<WebhookEndpoint> {
    const id = this.#newId('whe');
    const row: EndpointRow = {
      id,
      url: e.url,
      description: e.description,
      events: [...e.events],
      secret_enc: this.#keyring.encrypt(e.secret, secretCtx(id)),
      enabled: true,
      created_at: now,
      created_by: e.createdBy,
      updated_at: now,
    };
    await this.#db.tx('create a webhook endpoint', (q) =>
      q.query(
        `INSERT INTO ${this.#t.endpoints} (id, url, description, events, secret_enc, enabled, created_at, created_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [row.id, row.url, row.description, row.events, row.secret_enc, row.enabled, row.created_at, row.created_by, row.updated_at],
      ),
    );
    return toEndpoint(row);
  }

  async listEndpoints(): Promise<WebhookEndpoint[]> {
    const r = await this.#db.query<EndpointRow>('list webhook endpoints', `SELECT * FROM ${this.#t.endpoints} ORDER BY created_at, id COLLATE "C"`);
    return r.rows.map(toEndpoint);
  }

  async getEndpoint(id: string): Promise<WebhookEndpoint | undefined> {
    const r = await this.#db.query<EndpointRow>('read a webhook endpoint', `SELECT * FROM ${this.#t.endpoints} WHERE id = $1`, [id]);
    return r.rows[0] && toEndpoint(r.rows[0]);
  }

  async deleteEndpoint(id: string): Promise<boolean> {
    // ON DELETE CASCADE removes its deliveries and attempts: nothing is ever sent to a deleted endpoint.
    const r = await this.#db.tx('delete a webhook endpoint', (q) => q.query(`DELETE FROM ${this.#t.endpoints} WHERE id = $1`, [id]));
    return r.rowCount === 1;
  }

  // ---- outbox

  async enqueueEvent(event: NewWebhookEvent, now: number, onlyEndpoint?: string): Promise<string[]> {
    return this.#db.tx('queue a webhook event', async (q) => {
      const endpoints =
        onlyEndpoint === undefined
          ? await q.query<{ id: string }>(`SELECT id FROM ${this.#t.endpoints} WHERE enabled AND ('*' = ANY(events) OR $1 = ANY(events)) ORDER BY created_at, id`, [event.type])
          : await q.query<{ id: string }>(`SELECT id FROM ${this.#t.endpoints} WHERE id = $1`, [onlyEndpoint]);
      if (endpoints.rows.length === 0) return [];
      await q.query(`INSERT INTO ${this.#t.events} (id, type, connection, at, body) VALUES ($1, $2, $3, $4, $5)`, [event.id, event.type, event.connection, event.at, event.body]);
      const ids = endpoints.rows.map(() => this.#newId('whd'));
      await q.query(
        `INSERT INTO ${this.#t.deliveries} (id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at)
         SELECT d.id, $1, d.endpoint_id, 'pending', 0, $2, $2 FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS d(id, endpoint_id, n) ORDER BY d.n`,
        [event.id, now, ids, endpoints.rows.map((e) => e.id)],
      );
      return ids;
    });
  }

  async claimDue(now: number, leaseMs: number, limit: number, ids?: string[]): Promise<ClaimedDelivery[]> {
    if (ids !== undefined && ids.length === 0) return [];
    const rows = await this.#db.tx('claim webhook deliveries', async (q: Queryable) => {
      const params: unknown[] = [now, now + leaseMs, Math.max(0, Math.floor(limit))];
      if (ids !== undefined) params.push(ids);
      // SKIP LOCKED: rows another instance is claiming right now are passed over instead of waited for.
      const claimed = await q.query<{ id: string }>(
        `WITH due AS (
           SELECT d.id FROM ${this.#t.deliveries} d
           WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND (d.claimed_until IS NULL OR d.claimed_until <= $1)
             ${ids !== undefined ? 'AND d.id = ANY($4::text[])' : ''}
           ORDER BY d.next_attempt_at, d.created_at, d.seq
           LIMIT $3
           FOR UPDATE SKIP LOCKED
         )
         UPDATE ${this.#t.deliveries} d SET claimed_until = $2 FROM due WHERE d.id = due.id RETURNING d.id`,
        params,
      );
      if (claimed.rows.length === 0) return [];
      const full = await q.query<DeliveryRow & { body: string; secret_enc: string }>(
        `SELECT x.*, e.body, w.secret_enc FROM (${this.#deliverySelect} WHERE d.id = ANY($1::text[])) x
         JOIN ${this.#t.events} e ON e.id = x.event_id JOIN ${this.#t.endpoints} w ON w.id = x.endpoint_id
         ORDER BY x.next_attempt_at, x.created_at`,
        [claimed.rows.map((r) => r.id)],
      );
      return full.rows;
    });
    return rows.map((r) => ({ delivery: toDelivery(r), body: r.body, secret: this.#keyring.decrypt(r.secret_enc, secretCtx(r.endpoint_id)) }));
  }

  async recordAttempt(deliveryId: string, o: AttemptOutcome): Promise<void> {
    await this.#db.tx('record a webhook delivery attempt', async (q) => {
      const cur = await q.query<{ attempts: number }>(`SELECT attempts FROM ${this.#t.deliveries} WHERE id = $1 FOR UPDATE`, [deliveryId]);
      const attempts = cur.rows[0]?.attempts;
      if (attempts === undefined) return; // the endpoint was deleted meanwhile
      await q.query(
        `INSERT INTO ${this.#t.attempts} (delivery_id, attempt, at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (delivery_id, attempt) DO UPDATE SET at = excluded.at, status_code = excluded.status_code, error = excluded.error,
           duration_ms = excluded.duration_ms`,
        [deliveryId, o.attempt, o.at, o.statusCode, o.error, o.durationMs],
      );
      await q.query(
        `UPDATE ${this.#t.deliveries} SET ${ATTEMPT_COLUMNS.map((col, i) => `${col} = $${i + 2}`).join(', ')}, claimed_until = NULL WHERE id = $1`,
        [deliveryId, ...afterAttempt(o, attempts)],
      );
    });
  }

  async listDeliveries(query: { endpointId?: string; status?: DeliveryStatus; limit?: number } = {}): Promise<DeliveryRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.endpointId !== undefined) {
      params.push(query.endpointId);
      where.push(`d.endpoint_id = $${params.length}`);
    }
    if (query.status !== undefined) {
      params.push(query.status);
      where.push(`d.status = $${params.length}`);
    }
    params.push(Math.min(Math.max(query.limit ?? 100, 1), 1000));
    const r = await this.#db.query<DeliveryRow>(
      'list webhook deliveries',
      `${this.#deliverySelect} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY d.created_at DESC, d.seq DESC LIMIT $${params.length}`,
      params,
    );
    return r.rows.map(toDelivery);
  }

  async getDelivery(id: string): Promise<(DeliveryRecord & { attemptLog: DeliveryAttempt[] }) | undefined> {
    const r = await this.#db.query<DeliveryRow>('read a webhook delivery', `${this.#deliverySelect} WHERE d.id = $1`, [id]);
    const row = r.rows[0];
    if (!row) return undefined;
    const attempts = await this.#db.query<AttemptRow>(
      'read a webhook delivery',
      `SELECT attempt, at, status_code, error, duration_ms FROM ${this.#t.attempts} WHERE delivery_id = $1 ORDER BY attempt`,
      [id],
    );
    return { ...toDelivery(row), attemptLog: attempts.rows.map(toAttempt) };
  }

  async redeliver(id: string, now: number): Promise<boolean> {
    const r = await this.#db.tx('redeliver a webhook', (q) =>
      q.query(`UPDATE ${this.#t.deliveries} SET status = 'pending', next_attempt_at = $2, completed_at = NULL WHERE id = $1 AND status <> 'pending'`, [id, now]),
    );
    return r.rowCount === 1;
  }

  async nextDueAt(): Promise<number | null> {
    const r = await this.#db.query<{ at: number | null }>(
      'read the next webhook delivery time',
      `SELECT min(GREATEST(next_attempt_at, COALESCE(claimed_until, 0))) AS at FROM ${this.#t.deliveries} WHERE status = 'pending'`,
    );
    return r.rows[0]?.at ?? null;
  }

  async purgeFinished(before: number): Promise<number> {
    return this.#db.tx('purge old webhook deliveries', async (q) => {
      const n = await q.query(`DELETE FROM ${this.#t.deliveries} WHERE status <> 'pending' AND completed_at < $1`, [before]);
      await q.query(`DELETE FROM ${this.#t.events} e WHERE e.at < $1 AND NOT EXISTS (SELECT 1 FROM ${this.#t.deliveries} d WHERE d.event_id = e.id)`, [before]);
      return n.rowCount ?? 0;
    });
  }

  // ---- jobs

  async beginJobRun(name: string, now: number, minIntervalMs: number): Promise<boolean> {
    return this.#db.tx('start a job run', async (q) => {
      // Make sure the row exists, then lock it: a second instance doing the same waits here and sees our start.
      await q.query(`INSERT INTO ${this.#t.jobs} (name, runs) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING`, [name]);
      const r = await q.query<{ last_started_at: number | null }>(`SELECT last_started_at FROM ${this.#t.jobs} WHERE name = $1 FOR UPDATE`, [name]);
      const last = r.rows[0]?.last_started_at ?? null;
      // |now - last|: instances' clocks differ a little, so a start recorded "in the future" by a peer whose clock
      // runs ahead is a start of this period too (now >= last alone would run the job again on the slower instance).
      // A start far in the future (a clock that was badly wrong) does not block the job for longer than one period.
      if (last !== null && Math.abs(now - last) < minIntervalMs) return false;
      await q.query(`UPDATE ${this.#t.jobs} SET last_started_at = $2, last_outcome = 'running', runs = runs + 1 WHERE name = $1`, [name, now]);
      return true;
    });
  }

  async finishJobRun(name: string, now: number, outcome: 'ok' | 'failed', error: string | null): Promise<void> {
    await this.#db.query('finish a job run', `UPDATE ${this.#t.jobs} SET last_finished_at = $2, last_outcome = $3, last_error = $4 WHERE name = $1`, [name, now, outcome, error]);
  }

  async listJobRuns(): Promise<JobRunRecord[]> {
    const r = await this.#db.query<JobRunRow>('list job runs', `SELECT * FROM ${this.#t.jobs} ORDER BY name COLLATE "C"`);
    return r.rows.map(toJobRun);
  }

  // ---- operations

  async reencryptSecrets(): Promise<{ rewritten: number; remaining: number }> {
    const k = this.#keyring;
    return this.#db.tx('re-encrypt webhook secrets', async (q) => {
      let rewritten = 0;
      let remaining = 0;
      const rows = await q.query<Pick<EndpointRow, 'id' | 'secret_enc'>>(`SELECT id, secret_enc FROM ${this.#t.endpoints} FOR UPDATE`);
      for (const r of rows.rows) {
        if (!k.needsReencrypt(r.secret_enc)) continue;
        const v = k.reencrypt(r.secret_enc, secretCtx(r.id));
        await q.query(`UPDATE ${this.#t.endpoints} SET secret_enc = $2 WHERE id = $1`, [r.id, v]);
        rewritten++;
        if (k.needsReencrypt(v)) remaining++;
      }
      return { rewritten, remaining };
    });
  }
}
