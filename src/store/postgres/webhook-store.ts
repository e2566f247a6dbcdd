/**
 * The PostgreSQL WebhookStore (see ../webhook-types.ts), mirroring the SQLite one (../sqlite/webhook-store.ts):
 * webhook endpoints, the event outbox and delivery log, and scheduled-job run records, in the core store's schema
 * with their own migrations table (`webhook_schema_migrations`).
 *
 * What several instances need from it:
 * - claimDue takes due deliveries with `FOR UPDATE SKIP LOCKED` and stamps the claim in the same transaction, so
 *   workers on different instances never claim the same delivery and never wait on each other's rows;
 * - beginJobRun reads and writes the job's row under a row lock (INSERT ... ON CONFLICT, then SELECT ... FOR UPDATE),
 *   so two instances starting the same job in one period get one "go ahead".
 * Signing secrets are encrypted with the Keyring with the same AAD as SQLite, and a CHECK refuses plain text.
 */
import { randomUUID } from 'node:crypto';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { secretContext, type Keyring } from '../cipher.js';
import type {
  AttemptOutcome,
  ClaimedDelivery,
  DeliveryAttempt,
  DeliveryRecord,
  DeliveryStatus,
  JobRunRecord,
  NewWebhookEndpoint,
  NewWebhookEvent,
  WebhookEndpoint,
  WebhookStore,
} from '../webhook-types.js';
import { checkout, createPool, PgDatabase, poolConfig, type PgPoolOptions, type Queryable } from './db.js';
import { describeServer, errorMapper } from './errors.js';
import { checkSchemaName } from './index.js';
import { migrate, NewerSchemaError, quoteIdent, type PgMigration } from './migrations.js';

export const WEBHOOK_MIGRATIONS_TABLE = 'webhook_schema_migrations';

/** Append only; never edit a released migration. */
export const webhookMigrations: PgMigration[] = [
  {
    version: 1,
    name: 'webhooks and job runs',
    sql: (s) => `
      CREATE TABLE ${s}.webhook_endpoints (
        id text PRIMARY KEY,
        url text NOT NULL,
        description text NOT NULL,
        events text[] NOT NULL,
        secret_enc text NOT NULL CHECK (secret_enc LIKE 'dk1.%'),
        enabled boolean NOT NULL,
        created_at bigint NOT NULL,
        created_by text NOT NULL,
        updated_at bigint NOT NULL
      );

      CREATE TABLE ${s}.webhook_events (
        id text PRIMARY KEY,
        type text NOT NULL,
        connection text,
        at bigint NOT NULL,
        body text NOT NULL
      );

      CREATE TABLE ${s}.webhook_deliveries (
        id text PRIMARY KEY,
        -- Insertion order for listings (SQLite uses its rowid).
        seq bigint GENERATED ALWAYS AS IDENTITY,
        event_id text NOT NULL REFERENCES ${s}.webhook_events(id) ON DELETE CASCADE,
        endpoint_id text NOT NULL REFERENCES ${s}.webhook_endpoints(id) ON DELETE CASCADE,
        status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at bigint,
        claimed_until bigint,
        last_attempt_at bigint,
        last_status_code integer,
        last_error text,
        last_duration_ms bigint,
        created_at bigint NOT NULL,
        completed_at bigint
      );
      CREATE INDEX webhook_deliveries_due ON ${s}.webhook_deliveries(status, next_attempt_at);
      CREATE INDEX webhook_deliveries_endpoint ON ${s}.webhook_deliveries(endpoint_id, created_at);
      CREATE INDEX webhook_deliveries_event ON ${s}.webhook_deliveries(event_id);

      CREATE TABLE ${s}.webhook_attempts (
        delivery_id text NOT NULL REFERENCES ${s}.webhook_deliveries(id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        at bigint NOT NULL,
        status_code integer,
        error text,
        duration_ms bigint NOT NULL,
        PRIMARY KEY (delivery_id, attempt)
      );

      CREATE TABLE ${s}.job_runs (
        name text PRIMARY KEY,
        last_started_at bigint,
        last_finished_at bigint,
        last_outcome text,
        last_error text,
        runs integer NOT NULL DEFAULT 0
      );
    `,
  },
];

export interface PostgresWebhookStoreOptions extends PgPoolOptions {
  /** The keyring the core store uses. */
  keyring: Keyring;
  /** The core store's schema (default `dropkey`). */
  schema?: string;
  /** Ids for endpoints and deliveries (default crypto.randomUUID-based). */
  newId?: (prefix: string) => string;
}

interface EndpointRow {
  id: string;
  url: string;
  description: string;
  events: string[];
  secret_enc: string;
  enabled: boolean;
  created_at: number;
  created_by: string;
  updated_at: number;
}

interface DeliveryRow {
  id: string;
  event_id: string;
  event_type: string;
  connection: string | null;
  endpoint_id: string;
  endpoint_url: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number | null;
  last_attempt_at: number | null;
  last_status_code: number | null;
  last_error: string | null;
  last_duration_ms: number | null;
  created_at: number;
  completed_at: number | null;
}

const secretCtx = (id: string) => secretContext('webhook_endpoints', id, 'secret');

function toEndpoint(r: EndpointRow): WebhookEndpoint {
  return {
    id: r.id,
    url: r.url,
    description: r.description,
    events: [...r.events],
    enabled: r.enabled,
    createdAt: r.created_at,
    createdBy: r.created_by,
    updatedAt: r.updated_at,
  };
}

function toDelivery(r: DeliveryRow): DeliveryRecord {
  return {
    id: r.id,
    eventId: r.event_id,
    eventType: r.event_type,
    connection: r.connection,
    endpointId: r.endpoint_id,
    endpointUrl: r.endpoint_url,
    status: r.status,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    lastAttemptAt: r.last_attempt_at,
    lastStatusCode: r.last_status_code,
    lastError: r.last_error,
    lastDurationMs: r.last_duration_ms,
    createdAt: r.created_at,
    completedAt: r.completed_at,
  };
}

export async function openPostgresWebhookStore(options: PostgresWebhookStoreOptions, now: number = Date.now()): Promise<WebhookStore> {
  const schema = checkSchemaName(options.schema ?? 'dropkey');
  const fail = errorMapper(describeServer(options.connectionString));
  const config = poolConfig({ maxConnections: 5, ...options, applicationName: options.applicationName ?? 'dropkey webhooks' });
  const pool = createPool(config);
  try {
    const { client, release } = await checkout(pool);
    try {
      await migrate(client, schema, now, webhookMigrations, WEBHOOK_MIGRATIONS_TABLE);
    } finally {
      release();
    }
  } catch (cause) {
    await pool.end().catch(() => {});
    if (cause instanceof NewerSchemaError) {
      throw new DropkeyError(ErrorCodes.STORE, 'the webhook tables were written by a newer dropkey', {
        cause,
        hint: 'upgrade dropkey; an older version cannot safely use this database',
      });
    }
    throw fail('prepare the webhook tables (migrations)', cause);
  }
  return new PgWebhookStore(new PgDatabase(pool, config, fail), schema, options.keyring, options.newId ?? defaultId);
}

function defaultId(prefix: string): string {
  return `${prefix}_${randomUUID().replace(/-/g, '')}`;
}

class PgWebhookStore implements WebhookStore {
  readonly #db: PgDatabase;
  readonly #keyring: Keyring;
  readonly #newId: (prefix: string) => string;
  readonly #t: Record<'endpoints' | 'events' | 'deliveries' | 'attempts' | 'jobs', string>;
  readonly #deliverySelect: string;

  constructor(db: PgDatabase, schema: string, keyring: Keyring, newId: (prefix: string) => string) {
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
    this.#deliverySelect = `
      SELECT d.id, d.event_id, e.type AS event_type, e.connection, d.endpoint_id, w.url AS endpoint_url, d.status,
             d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status_code, d.last_error, d.last_duration_ms,
             d.created_at, d.completed_at
      FROM ${this.#t.deliveries} d
      JOIN ${this.#t.events} e ON e.id = d.event_id
      JOIN ${this.#t.endpoints} w ON w.id = d.endpoint_id`;
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
      const status: DeliveryStatus = o.result === 'retry' ? 'pending' : o.result;
      await q.query(
        `UPDATE ${this.#t.deliveries} SET status = $2, attempts = $3, next_attempt_at = $4, claimed_until = NULL, last_attempt_at = $5,
           last_status_code = $6, last_error = $7, last_duration_ms = $8, completed_at = $9 WHERE id = $1`,
        [
          deliveryId,
          status,
          Math.max(attempts, o.attempt),
          o.result === 'retry' ? o.nextAttemptAt : null,
          o.at,
          o.statusCode,
          o.error,
          o.durationMs,
          o.result === 'retry' ? null : o.at + o.durationMs,
        ],
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
    const attempts = await this.#db.query<{ attempt: number; at: number; status_code: number | null; error: string | null; duration_ms: number }>(
      'read a webhook delivery',
      `SELECT attempt, at, status_code, error, duration_ms FROM ${this.#t.attempts} WHERE delivery_id = $1 ORDER BY attempt`,
      [id],
    );
    return {
      ...toDelivery(row),
      attemptLog: attempts.rows.map((a) => ({ attempt: a.attempt, at: a.at, statusCode: a.status_code, error: a.error, durationMs: a.duration_ms })),
    };
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
    const r = await this.#db.query<{
      name: string;
      last_started_at: number | null;
      last_finished_at: number | null;
      last_outcome: string | null;
      last_error: string | null;
      runs: number;
    }>('list job runs', `SELECT * FROM ${this.#t.jobs} ORDER BY name COLLATE "C"`);
    return r.rows.map((row) => ({
      name: row.name,
      lastStartedAt: row.last_started_at,
      lastFinishedAt: row.last_finished_at,
      lastOutcome: row.last_outcome,
      lastError: row.last_error,
      runs: row.runs,
    }));
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

  async close(): Promise<void> {
    await this.#db.close();
  }
}
