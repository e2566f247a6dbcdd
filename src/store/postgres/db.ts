/**
 * The ONE connection pool and statement runner every PostgreSQL store of the driver shares (core, server, webhooks,
 * locks, back-off, key rotation): session settings, int8 parsing, error mapping, retry after a lost session, and
 * the in-flight counter tests use with virtual time.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type Pg from 'pg';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { isConnectionError, type ErrorMapper } from './errors.js';

const require = createRequire(import.meta.url);

/**
 * node-postgres, loaded once for the driver (db.ts, locks.ts). On Node 20 (no global `navigator`) pg's lib/stream.js
 * tells Cloudflare Workers apart, while it loads, by building a `Response`: that one object loads Node's whole fetch
 * implementation (undici), about a seventh of `dropkey token`'s CPU on PostgreSQL (bench/token-startup.mjs), for a
 * process that may never fetch anything. While pg loads, the global `Response` reads as absent (so pg takes the
 * Node.js streams, as it would anyway); its lazy definition is then put back untouched. The same require() as an
 * ES import, without Node's named-export scan of a CommonJS package.
 */
export const pg: typeof Pg = loadPg();

function loadPg(): typeof Pg {
  const g = globalThis as { navigator?: unknown };
  const response = g.navigator === undefined ? Object.getOwnPropertyDescriptor(globalThis, 'Response') : undefined;
  const shadow = response?.configurable === true;
  if (shadow) Object.defineProperty(globalThis, 'Response', { value: undefined, configurable: true, writable: true });
  try {
    return require('pg') as typeof Pg;
  } finally {
    if (shadow) Object.defineProperty(globalThis, 'Response', response);
  }
}

export interface PgPoolOptions {
  /** postgres://user:password@host:port/database (DROPKEY_DATABASE_URL). */
  connectionString: string;
  /** Most connections opened at once (default 10). */
  maxConnections?: number;
  /** Give up connecting after this long (default 10 000 ms); 0 waits forever (not recommended). */
  connectTimeoutMs?: number;
  /** Idle pooled connections are closed after this long (default 30 000 ms). */
  idleTimeoutMs?: number;
  /** Server-side statement_timeout (default 30 000 ms): no statement of ours runs longer. */
  statementTimeoutMs?: number;
  /** application_name shown in pg_stat_activity (default `dropkey`). */
  applicationName?: string;
}

export type Queryable = Pick<Pg.PoolClient, 'query'>;

/**
 * int8 (epoch milliseconds, counters) as a JS number: node-postgres returns strings by default because int8 can
 * exceed 2^53; our values are far below that. Set per pool, so other users of `pg` in the process are not affected.
 */
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export function poolConfig(options: PgPoolOptions): Pg.PoolConfig {
  const statementTimeout = options.statementTimeoutMs ?? 30_000;
  return {
    connectionString: options.connectionString,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    idleTimeoutMillis: options.idleTimeoutMs ?? 30_000,
    statement_timeout: statementTimeout,
    // A process that hangs inside a transaction must not hold row locks forever.
    idle_in_transaction_session_timeout: Math.max(statementTimeout * 2, 10_000),
    application_name: options.applicationName ?? 'dropkey',
    keepAlive: true,
    types,
  };
}

export function createPool(config: Pg.PoolConfig): Pg.Pool {
  const pool = new pg.Pool(config);
  // An idle pooled connection that the server closes emits 'error' on the pool; without a listener that would crash
  // the process. The pool has already dropped the connection; the next operation opens a new one.
  pool.on('error', () => {});
  return pool;
}

export class PgDatabase {
  readonly pool: Pg.Pool;
  readonly #fail: ErrorMapper;
  /**
   * An operation that failed on an already-open connection before COMMIT is tried again on another one. After a
   * restart every idle pooled connection is dead, and each failed try discards one: pool size + 1 tries always
   * reach a fresh connection.
   */
  readonly #attempts: number;
  #pending = 0;
  #idleWaiters: (() => void)[] = [];
  #closed = false;

  constructor(pool: Pg.Pool, config: Pg.PoolConfig, fail: ErrorMapper) {
    this.pool = pool;
    this.#fail = fail;
    this.#attempts = (config.max ?? 10) + 1;
  }

  get pending(): number {
    return this.#pending;
  }

  /** Resolves when no operation is in flight. */
  idle(): Promise<void> {
    return this.#pending === 0 ? Promise.resolve() : new Promise((r) => this.#idleWaiters.push(r));
  }

  /** Counts `work` as in flight (for idle()). */
  async track<T>(work: () => Promise<T>): Promise<T> {
    this.#pending++;
    try {
      return await work();
    } finally {
      if (--this.#pending === 0) {
        const w = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const r of w) r();
      }
    }
  }

  #checkOpen(operation: string): void {
    if (this.#closed) throw new DropkeyError(ErrorCodes.INTERNAL, `store: cannot ${operation}: the store is closed`);
  }

  /**
   * One statement outside a transaction (reads, and writes that are safe to repeat), retried on a lost session.
   * With `timeoutMs`, the whole call (waiting for a connection included) fails after that long instead of the
   * pool's connect and statement timeouts: for callers that would rather go without than wait (the back-off).
   */
  query<R extends Pg.QueryResultRow>(operation: string, sql: string, params: unknown[] = [], options: { timeoutMs?: number; prepared?: boolean } = {}): Promise<Pg.QueryResult<R>> {
    this.#checkOpen(operation);
    const { timeoutMs, prepared = false } = options;
    const run = this.track(async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          if (prepared) return await this.pool.query<R>({ name: statementName(sql), text: sql, values: params });
          return timeoutMs === undefined ? await this.pool.query<R>(sql, params) : await this.pool.query<R>({ text: sql, values: params, query_timeout: timeoutMs } as Pg.QueryConfig);
        } catch (cause) {
          if (attempt < this.#attempts && isConnectionError(cause) && !isConnectFailure(cause)) continue;
          throw this.#fail(operation, cause);
        }
      }
    });
    return timeoutMs === undefined ? run : deadline(run, timeoutMs, () => this.#fail(operation, new Error(`timeout exceeded when trying to connect (${timeoutMs} ms)`)));
  }

  /**
   * A transaction. If the session is lost before COMMIT is sent, nothing was written and the whole transaction is
   * retried on another connection; a loss during COMMIT is reported (the outcome is unknown, so repeating could
   * apply the change twice).
   */
  tx<T>(operation: string, work: (q: Queryable) => Promise<T>): Promise<T> {
    this.#checkOpen(operation);
    return this.track(async () => {
      for (let attempt = 1; ; attempt++) {
        let client: Pg.PoolClient;
        let release: (err?: Error | boolean) => void;
        try {
          ({ client, release } = await checkout(this.pool));
        } catch (cause) {
          throw this.#fail(operation, cause);
        }
        let committing = false;
        try {
          // Explicit: the row-lock-then-check logic assumes READ COMMITTED, whatever the server's default is.
          await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
          const result = await work(client);
          committing = true;
          await client.query('COMMIT');
          release();
          return result;
        } catch (cause) {
          const broken = isConnectionError(cause);
          if (!broken && !committing) {
            try {
              await client.query('ROLLBACK');
            } catch {
              release(true);
              throw this.#fail(operation, cause);
            }
          }
          release(broken ? (cause as Error) : undefined);
          if (broken && !committing && attempt < this.#attempts) continue;
          throw this.#fail(operation, cause);
        }
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.pool.end().catch(() => {});
  }
}

/**
 * Checks a client out of the pool with an error listener attached at once. A session error between two of our
 * statements is emitted on the client, not returned by a query, and without a listener it crashes the process. The
 * listener must be attached in the checkout callback itself: with `await pool.connect()` it would come a microtask
 * later, after the rest of the socket chunk that freed the client (e.g. a FATAL from pg_terminate_backend right
 * behind the previous query's ReadyForQuery) has already been parsed and emitted. The next statement then fails
 * ("not queryable") and callers handle that.
 */
export function checkout(pool: Pg.Pool): Promise<{ client: Pg.PoolClient; release: (err?: Error | boolean) => void }> {
  return new Promise((resolve, reject) => {
    pool.connect((err, client) => {
      if (err || !client) return reject(err ?? new Error('no client'));
      const ignore = () => {};
      client.on('error', ignore);
      resolve({
        client,
        release: (e) => {
          client.removeListener('error', ignore);
          client.release(e);
        },
      });
    });
  });
}

const statementNames = new Map<string, string>();

/**
 * The name of the server-side prepared statement for `sql` (node-postgres prepares a named statement once per
 * pooled connection and then only binds and executes it). Derived from the text, so one name never stands for
 * two texts. For fixed SQL on hot read paths only, with explicit column lists: a `SELECT *` statement would fail
 * ("cached plan must not change result type") after another instance's migration added a column.
 */
function statementName(sql: string): string {
  let name = statementNames.get(sql);
  if (name === undefined) {
    name = `dk_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}`;
    statementNames.set(sql, name);
  }
  return name;
}

export function codeOf(err: unknown): string {
  return String((err as { code?: unknown } | null)?.code ?? '');
}

/** Failing to open a new connection (server down, refused login): the pool already tried; retrying at once won't help. */
function isConnectFailure(err: unknown): boolean {
  const code = codeOf(err);
  return code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === '57P03' || /timeout exceeded when trying to connect/i.test((err as Error)?.message ?? '');
}

/** `p`, or the error `late()` makes once `ms` passed (p keeps running; its outcome is then ignored). */
function deadline<T>(p: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), ms);
    timer.unref();
  });
  p.catch(() => {}); // a failure after the deadline has nobody left to tell
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
