/**
 * The SQLite WebhookStore (see ../webhook-types.ts): webhook endpoints, the event outbox and delivery log, and
 * scheduled-job run records, in the same database file as the core store, with their own migrations table
 * ('webhook_schema_migrations', so the core's schema_migrations never sees an unknown version).
 *
 * Same discipline as ./index.ts: WAL, busy_timeout, IMMEDIATE transactions for read-then-write (claims), driver
 * errors mapped to DROPKEY_STORE naming the operation, never parameter values. Signing secrets are encrypted with
 * the Keyring, bound to their row (AAD), and a CHECK refuses anything that is not a ciphertext.
 */
import type Database from 'better-sqlite3';
import { openDatabaseFile } from './driver.js';
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
import { migrate, NewerSchemaError, type Migration } from './migrations.js';

export const WEBHOOK_MIGRATIONS_TABLE = 'webhook_schema_migrations';

/** Append only; never edit a released migration. */
export const webhookMigrations: Migration[] = [
  {
    version: 1,
    name: 'webhooks and job runs',
    sql: `
      CREATE TABLE webhook_endpoints (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        description TEXT NOT NULL,
        events TEXT NOT NULL,
        secret_enc TEXT NOT NULL CHECK (secret_enc LIKE 'dk1.%'),
        enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE webhook_events (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        connection TEXT,
        at INTEGER NOT NULL,
        body TEXT NOT NULL
      ) STRICT;

      CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
        endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        claimed_until INTEGER,
        last_attempt_at INTEGER,
        last_status_code INTEGER,
        last_error TEXT,
        last_duration_ms INTEGER,
        created_at INTEGER NOT NULL,
        completed_at INTEGER
      ) STRICT;
      CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
      CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, created_at);

      CREATE TABLE webhook_attempts (
        delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        at INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms INTEGER NOT NULL,
        PRIMARY KEY (delivery_id, attempt)
      ) STRICT;

      CREATE TABLE job_runs (
        name TEXT PRIMARY KEY,
        last_started_at INTEGER,
        last_finished_at INTEGER,
        last_outcome TEXT,
        last_error TEXT,
        runs INTEGER NOT NULL DEFAULT 0
      ) STRICT;
    `,
  },
];

export interface SqliteWebhookStoreOptions {
  /** The core store's database file (SqliteStore.path). */
  path: string;
  /** The keyring the core store uses. */
  keyring: Keyring;
  busyTimeoutMs?: number;
  /** Ids for endpoints and deliveries (default crypto.randomUUID-based). */
  newId?: (prefix: string) => string;
}

interface EndpointRow {
  id: string;
  url: string;
  description: string;
  events: string;
  secret_enc: string;
  enabled: number;
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

const DELIVERY_SELECT = `
  SELECT d.id, d.event_id, e.type AS event_type, e.connection, d.endpoint_id, w.url AS endpoint_url, d.status,
         d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status_code, d.last_error, d.last_duration_ms,
         d.created_at, d.completed_at
  FROM webhook_deliveries d
  JOIN webhook_events e ON e.id = d.event_id
  JOIN webhook_endpoints w ON w.id = d.endpoint_id`;

function storeError(operation: string, cause: unknown): DropkeyError {
  if (cause instanceof DropkeyError) return cause;
  const code = String((cause as { code?: unknown })?.code ?? '');
  const busy = code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
  return new DropkeyError(ErrorCodes.STORE, `store: cannot ${operation}${busy ? ': the database is busy' : code ? ` (${code})` : ''}`, {
    cause,
    details: { operation, ...(code ? { sqliteCode: code } : {}), ...(busy ? { retryable: true } : {}) },
    ...(busy ? { hint: 'try again in a moment' } : {}),
  });
}

const secretCtx = (id: string) => secretContext('webhook_endpoints', id, 'secret');

function parseEvents(text: string): string[] {
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

function toEndpoint(r: EndpointRow): WebhookEndpoint {
  return {
    id: r.id,
    url: r.url,
    description: r.description,
    events: parseEvents(r.events),
    enabled: r.enabled === 1,
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

export async function openSqliteWebhookStore(options: SqliteWebhookStoreOptions, now: number = Date.now()): Promise<WebhookStore> {
  let db: Database.Database;
  try {
    db = openDatabaseFile(options.path, { timeout: options.busyTimeoutMs ?? 5000 }).db;
  } catch (cause) {
    throw storeError('open the database', cause);
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    migrate(db, now, webhookMigrations, WEBHOOK_MIGRATIONS_TABLE);
  } catch (cause) {
    db.close();
    if (cause instanceof NewerSchemaError) {
      throw new DropkeyError(ErrorCodes.STORE, 'the webhook tables were written by a newer dropkey', {
        cause,
        hint: 'upgrade dropkey; an older version cannot safely use this database',
      });
    }
    throw storeError('prepare the webhook tables (migrations)', cause);
  }
  return new SqliteWebhookStore(db, options.keyring, options.newId ?? defaultId);
}

function defaultId(prefix: string): string {
  return `${prefix}_${randomUUID().replace(/-/g, '')}`;
}

class SqliteWebhookStore implements WebhookStore {
  readonly #db: Database.Database;
  readonly #keyring: Keyring;
  readonly #newId: (prefix: string) => string;
  #closed = false;

  constructor(db: Database.Database, keyring: Keyring, newId: (prefix: string) => string) {
    this.#db = db;
    this.#keyring = keyring;
    this.#newId = newId;
  }

  #run<T>(operation: string, work: () => T, immediate = false): T {
    if (this.#closed) throw new DropkeyError(ErrorCodes.INTERNAL, `store: cannot ${operation}: the store is closed`);
    try {
      return immediate ? this.#db.transaction(work).immediate() : work();
    } catch (cause) {
      throw storeError(operation, cause);
    }
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
          const types = parseEvents(e.events);
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
        const status: DeliveryStatus = o.result === 'retry' ? 'pending' : o.result;
        this.#db
          .prepare(
            `UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, claimed_until = NULL, last_attempt_at = ?,
               last_status_code = ?, last_error = ?, last_duration_ms = ?, completed_at = ? WHERE id = ?`,
          )
          .run(
            status,
            Math.max(cur.attempts, o.attempt),
            o.result === 'retry' ? o.nextAttemptAt : null,
            o.at,
            o.statusCode,
            o.error,
            o.durationMs,
            o.result === 'retry' ? null : o.at + o.durationMs,
            deliveryId,
          );
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
        .all(id) as { attempt: number; at: number; status_code: number | null; error: string | null; duration_ms: number }[];
      return {
        ...toDelivery(r),
        attemptLog: attempts.map((a) => ({ attempt: a.attempt, at: a.at, statusCode: a.status_code, error: a.error, durationMs: a.duration_ms })),
      };
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
    return this.#run('list job runs', () =>
      (
        this.#db.prepare('SELECT * FROM job_runs ORDER BY name').all() as {
          name: string;
          last_started_at: number | null;
          last_finished_at: number | null;
          last_outcome: string | null;
          last_error: string | null;
          runs: number;
        }[]
      ).map((r) => ({
        name: r.name,
        lastStartedAt: r.last_started_at,
        lastFinishedAt: r.last_finished_at,
        lastOutcome: r.last_outcome,
        lastError: r.last_error,
        runs: r.runs,
      })),
    );
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

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}
