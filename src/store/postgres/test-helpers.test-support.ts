/**
 * Test support for the PostgreSQL store: the server comes from DROPKEY_TEST_DATABASE_URL (.ci/run sets it when a
 * server is running); every harness (../contract/harness.test-support.ts) works in its own fresh schema, dropped
 * afterwards, so test files can run in parallel on one database.
 */
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import pg from 'pg';

export const TEST_DATABASE_URL = process.env['DROPKEY_TEST_DATABASE_URL']?.trim() || undefined;

export const SKIP_REASON = 'PostgreSQL tests skipped: DROPKEY_TEST_DATABASE_URL is not set (.ci/run sets it when a server is running)';

export function freshSchemaName(): string {
  return `dropkey_test_${randomBytes(6).toString('hex')}`;
}

/** Runs fn with a raw client on the test database (administration and inspection). */
export async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await withAdmin((c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
}

/**
 * A TCP relay in front of the test server that can "take PostgreSQL down" without touching the real server (which
 * other test files share): down() cuts every relayed connection and refuses new ones, as a server restart does to
 * its clients; up() serves again.
 */
export class OutageProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #target: { host: string; port: number };
  #up = true;
  /** Connections accepted (while up). */
  accepted = 0;

  private constructor(server: Server, target: { host: string; port: number }) {
    this.#server = server;
    this.#target = target;
    server.on('connection', (client) => this.#relay(client));
  }

  static async start(databaseUrl: string): Promise<OutageProxy> {
    const u = new URL(databaseUrl);
    const server = createServer();
    const proxy = new OutageProxy(server, { host: u.hostname || '127.0.0.1', port: Number(u.port || 5432) });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  /** The database URL with the proxy's address instead of the server's. */
  url(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = '127.0.0.1';
    u.port = String((this.#server.address() as AddressInfo).port);
    return u.toString();
  }

  #relay(client: Socket): void {
    if (!this.#up) {
      client.destroy();
      return;
    }
    this.accepted++;
    const upstream = connect(this.#target.port, this.#target.host);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.#sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        this.#sockets.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  }

  down(): void {
    this.#up = false;
    for (const s of this.#sockets) s.destroy();
  }

  up(): void {
    this.#up = true;
  }

  async close(): Promise<void> {
    this.down();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
