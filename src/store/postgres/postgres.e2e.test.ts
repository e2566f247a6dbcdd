/**
 * What only the PostgreSQL driver has (the shared store contracts run in ./contract.e2e.test.ts): a schema per deployment, concurrent migrations, recovery after the
 * server drops our sessions, error mapping, and no secret in plain text in any column.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, test } from 'node:test';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { sampleApp, sampleConnection } from '../contract/core.test-support.js';
import { Keyring } from '../cipher.js';
import { openStore, selectDriver, storePaths } from '../index.js';
import { openDriver, type PostgresDriverOptions } from './index.js';
import { migrations } from './migrations.js';
import { dropSchema, freshSchemaName, OutageProxy, SKIP_REASON, TEST_DATABASE_URL, withAdmin } from './test-helpers.test-support.js';

if (!TEST_DATABASE_URL) {
  test('PostgreSQL store', { skip: SKIP_REASON }, () => {});
} else {
  driverTests(TEST_DATABASE_URL);
}

/** The core store alone, on a driver of its own (its close() closes the pool). */
async function openPostgresStore(o: PostgresDriverOptions) {
  return (await openDriver(o)).core;
}

function driverTests(url: string): void {
  /** A store in a fresh schema, dropped afterwards. */
  async function withSchema(fn: (schema: string, keyring: Keyring) => Promise<void>): Promise<void> {
    const schema = freshSchemaName();
    try {
      await fn(schema, Keyring.generate());
    } finally {
      await dropSchema(schema);
    }
  }

  const isStore = (re: RegExp) => (e: unknown) => {
    assert.ok(e instanceof DropkeyError, String(e));
    assert.equal(e.code, ErrorCodes.STORE, e.message);
    assert.match(e.message + '\n' + (e.hint ?? ''), re);
    return true;
  };

  describe('postgres driver', () => {
    it('openStore picks PostgreSQL for DROPKEY_DATABASE_URL=postgres://...?schema=NAME', () =>
      withSchema(async (schema) => {
        const home = mkdtempSync(join(tmpdir(), 'dropkey-pg-home-'));
        try {
          const databaseUrl = `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`;
          assert.deepEqual(selectDriver(databaseUrl, storePaths(home)), { kind: 'postgres', connectionString: url, schema });
          const key = 'a'.repeat(64);
          const s = await openStore({ home, databaseUrl, masterKey: key, warn: () => {} });
          await s.createApp(sampleApp());
          await s.close();
          const n = await withAdmin((c) => c.query(`SELECT count(*)::int AS n FROM "${schema}".apps`));
          assert.equal(n.rows[0].n, 1, 'the app went to the schema named in the URL');
          // The same key through the environment reads it back; another key is refused at open.
          const again = await openStore({ home, databaseUrl, masterKey: key, warn: () => {} });
          assert.equal((await again.getApp('backup'))!.secret, sampleApp().secret);
          await again.close();
          await assert.rejects(openStore({ home, databaseUrl, masterKey: 'b'.repeat(64), warn: () => {} }), (e: unknown) => {
            assert.ok(e instanceof DropkeyError && e.code === ErrorCodes.KEY_ERROR);
            return true;
          });
        } finally {
          rmSync(home, { recursive: true, force: true });
        }
      }));

    it('8 instances starting at once on an empty schema all succeed; migrations are applied once', () =>
      withSchema(async (schema, keyring) => {
        const stores = await Promise.all(
          Array.from({ length: 8 }, (_, i) => openPostgresStore({ connectionString: url, keyring, schema, clock: () => 1000 + i })),
        );
        try {
          await Promise.all(stores.map((s, i) => s.createApp(sampleApp(`app-${i}`))));
          assert.equal((await stores[0]!.listApps()).length, 8);
          const rows = await withAdmin((c) => c.query(`SELECT version, name FROM "${schema}".schema_migrations ORDER BY version`));
          assert.deepEqual(
            rows.rows,
            migrations.map((m) => ({ version: m.version, name: m.name })),
          );
        } finally {
          for (const s of stores) await s.close();
        }
        // Reopening applies nothing and keeps the data.
        const again = await openPostgresStore({ connectionString: url, keyring, schema });
        assert.equal((await again.listApps()).length, 8);
        await again.close();
      }));

    it('8 instances starting at once with different master keys: exactly one key wins, the others fail at open', () =>
      withSchema(async (schema) => {
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, () => openPostgresStore({ connectionString: url, keyring: Keyring.generate(), schema })),
        );
        const ok = results.filter((r): r is PromiseFulfilledResult<Awaited<ReturnType<typeof openPostgresStore>>> => r.status === 'fulfilled');
        assert.equal(ok.length, 1);
        for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as DropkeyError).code, ErrorCodes.KEY_ERROR);
        for (const r of ok) await r.value.close();
      }));

    it('a schema of the pre-one-migrator layout (three migration tables) moves forward with every row in place', () =>
      withSchema(async (schema, keyring) => {
        const T0 = 1_700_000_000_000;
        const first = await openDriver({ connectionString: url, keyring, schema });
        try {
          await first.core.createApp(sampleApp());
          await first.server.createAdmin({ email: 'ann@example.com', passwordHash: 'scrypt$old' }, T0);
          const e = await first.webhooks.createEndpoint({ url: 'https://hooks.example.com/a', description: '', events: ['*'], secret: 'whsec-old', createdBy: 'cli' }, T0);
          await first.webhooks.enqueueEvent({ id: 'evt_old', type: 'x', connection: null, at: T0, body: '{}' }, T0);
          await first.backoff.block('default', { until: T0 + 3_600_000, reason: 'too_many_requests' }, T0);
          void e;
        } finally {
          await first.close();
        }
        // The bookkeeping as dropkey kept it before: the core's versions 1-2 in schema_migrations, the server and
        // webhook tables in their own migration tables, the back-off table made on first use. The tables themselves
        // are the same (released migrations are never edited), so only the bookkeeping is rewound.
        await withAdmin(async (c) => {
          await c.query(`DELETE FROM "${schema}".schema_migrations WHERE version > 2`);
          for (const [t, name] of [['server_migrations', 'server tables'], ['webhook_schema_migrations', 'webhooks and job runs']] as const) {
            await c.query(`CREATE TABLE "${schema}".${t} (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)`);
            await c.query(`INSERT INTO "${schema}".${t} VALUES (1, $1, $2)`, [name, T0]);
          }
        });
        const s = await openDriver({ connectionString: url, keyring, schema });
        try {
          assert.equal((await s.core.getApp('backup'))?.secret, sampleApp().secret);
          assert.equal((await s.server.getAdminByEmail('ann@example.com'))?.passwordHash, 'scrypt$old');
          const [claimed] = await s.webhooks.claimDue(T0, 1_000, 10);
          assert.equal(claimed?.secret, 'whsec-old');
          assert.equal((await s.backoff.get('default', T0))?.reason, 'too_many_requests');
        } finally {
          await s.close();
        }
        const rows = await withAdmin((c) => c.query(`SELECT version, name FROM "${schema}".schema_migrations ORDER BY version`));
        assert.deepEqual(rows.rows, migrations.map((m) => ({ version: m.version, name: m.name })));
        const legacy = await withAdmin((c) => c.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1 AND tablename IN ('server_migrations', 'webhook_schema_migrations')`, [schema]));
        assert.equal(legacy.rows[0].n, 0, 'the old bookkeeping is gone');
      }));

    it('refuses a schema written by a newer dropkey, without touching it', () =>
      withSchema(async (schema, keyring) => {
        await (await openPostgresStore({ connectionString: url, keyring, schema })).close();
        await withAdmin((c) => c.query(`INSERT INTO "${schema}".schema_migrations (version, name, applied_at) VALUES (999, 'from the future', 0)`));
        await assert.rejects(openPostgresStore({ connectionString: url, keyring, schema }), isStore(/newer dropkey[\s\S]*upgrade dropkey/));
        const n = await withAdmin((c) => c.query(`SELECT count(*)::int AS n FROM "${schema}".schema_migrations`));
        assert.equal(n.rows[0].n, migrations.length + 1);
      }));

    it('refuses a bad schema name before connecting', async () => {
      await assert.rejects(openPostgresStore({ connectionString: url, keyring: Keyring.generate(), schema: 'x; DROP TABLE y' }), (e: unknown) => {
        assert.ok(e instanceof DropkeyError && e.code === ErrorCodes.BAD_INPUT);
        return true;
      });
    });

    it('an unreachable server is DROPKEY_STORE naming host and port, never the password', async () => {
      // Port 1 on loopback: nothing listens there, so the connection is refused at once.
      const err = await openPostgresStore({ connectionString: 'postgres://dk:hunter2-secret@127.0.0.1:1/nowhere', keyring: Keyring.generate(), connectTimeoutMs: 2000 }).then(
        () => assert.fail('expected a failure'),
        (e: unknown) => e as DropkeyError,
      );
      assert.ok(err instanceof DropkeyError && err.code === ErrorCodes.STORE, String(err));
      assert.match(err.message, /127\.0\.0\.1:1\/nowhere.*unreachable/);
      assert.match(err.hint ?? '', /reconnects by itself/);
      assert.equal(err.details?.['retryable'], true);
      assert.ok(err.cause, 'the driver error is kept as cause');
      const shown = JSON.stringify(err) + err.message + (err.hint ?? '');
      assert.doesNotMatch(shown, /hunter2/);
    });

    it('a wrong database name and a refused login say what to fix', async () => {
      const u = new URL(url);
      u.pathname = '/dropkey_no_such_db';
      await assert.rejects(openPostgresStore({ connectionString: u.toString(), keyring: Keyring.generate() }), isStore(/does not exist[\s\S]*createdb/));
      const v = new URL(url);
      v.username = 'dropkey_no_such_role';
      await assert.rejects(openPostgresStore({ connectionString: v.toString(), keyring: Keyring.generate() }), isStore(/refused the login|PostgreSQL 28/));
    });

    it('recovers when PostgreSQL terminates every session of the pool (pg_terminate_backend), also mid-transaction', () =>
      withSchema(async (schema, keyring) => {
        const appName = `dk_${schema.slice(-12)}`;
        const s = await openPostgresStore({ connectionString: url, keyring, schema, applicationName: appName, maxConnections: 4 });
        try {
          await s.createApp(sampleApp());
          await s.createConnection(sampleConnection('default', 'backup'));
          // Fill the pool with open connections, and a liveness session.
          await Promise.all(Array.from({ length: 8 }, () => s.getConnection('default')));
          await s.withLock('k', { ttlMs: 5_000, waitMs: 0 }, async () => {});
          const terminate = () =>
            withAdmin(async (c) => {
              // The timeout form waits until each backend has exited (PostgreSQL 14+).
              const r = await c.query(
                `SELECT pg_terminate_backend(pid, 5000) AS ok FROM pg_stat_activity WHERE application_name LIKE $1 AND pid <> pg_backend_pid()`,
                [`${appName}%`],
              );
              return r.rows.length;
            });
          assert.ok((await terminate()) >= 2, 'pooled and liveness sessions were terminated');
          // Every operation kind works again at once: reads, transactions, locks.
          assert.equal((await s.getConnection('default'))!.refreshToken, sampleConnection().refreshToken);
          await s.updateConnection('default', { accessToken: 'sl.after-terminate' });
          assert.equal(await s.withLock('k', { ttlMs: 5_000, waitMs: 1_000 }, async () => 'locked'), 'locked');

          // Terminate while operations are in flight: each either succeeds or fails with a retryable STORE error,
          // and the store works afterwards.
          const inflight = Array.from({ length: 20 }, (_, i) =>
            i % 2 ? s.getConnection('default') : s.updateConnection('default', { lastError: `e${i}` }),
          );
          const settled = Promise.allSettled(inflight); // observed now: some may fail before terminate() returns
          await terminate();
          const outcomes = await settled;
          for (const r of outcomes) {
            if (r.status === 'rejected') {
              assert.ok(r.reason instanceof DropkeyError && r.reason.code === ErrorCodes.STORE, String(r.reason));
              assert.equal(r.reason.details?.['retryable'], true);
            }
          }
          process.stdout.write(`terminated mid-run: ${outcomes.filter((r) => r.status === 'fulfilled').length}/20 in-flight operations succeeded\n`);
          const after = await s.getConnection('default');
          assert.equal(after!.accessToken, 'sl.after-terminate');
          assert.equal(after!.refreshToken, sampleConnection().refreshToken, 'the refresh token survives');
        } finally {
          await s.close();
        }
      }));

    it('PostgreSQL down under load: fast retryable STORE errors, lock waiters keep waiting, full recovery without a restart', { timeout: 60_000 }, () =>
      withSchema(async (schema, keyring) => {
        const proxy = await OutageProxy.start(url);
        const s = await openPostgresStore({ connectionString: proxy.url(url), keyring, schema, maxConnections: 4, connectTimeoutMs: 2_000 });
        try {
          await s.createApp(sampleApp());
          await s.createConnection(sampleConnection('default', 'backup'));
          const events = new EventEmitter();
          let ok = 0;
          let updatesOk = 0;
          const failures: unknown[] = [];
          let stop = false;
          const until = (cond: () => boolean) =>
            new Promise<void>((resolve) => {
              const check = () => {
                if (!cond()) return;
                events.off('step', check);
                resolve();
              };
              events.on('step', check);
              check();
            });
          const workers = Array.from({ length: 6 }, async (_, w) => {
            for (let i = 0; !stop; i++) {
              try {
                if (w % 2) await s.getConnection('default');
                else {
                  await s.updateConnection('default', { lastError: `w${w}-${i}` });
                  updatesOk++;
                }
                ok++;
              } catch (err) {
                failures.push(err);
                await delay(5); // back-off of the load generator itself, not a wait for a condition
              }
              events.emit('step');
            }
          });
          await until(() => ok >= 30);
          proxy.down();
          await until(() => failures.length >= 10);
          // A lock asked for during the outage waits it out (a store error counts as "not yet").
          const waiter = s.withLock('refresh:default', { ttlMs: 5_000, waitMs: 30_000 }, async () => 'locked');
          const t0 = Date.now();
          const err = await s.getApp('backup').then(() => assert.fail('expected a failure while down'), (e: unknown) => e);
          assert.ok(err instanceof DropkeyError && err.code === ErrorCodes.STORE, String(err));
          assert.match(err.message, /cannot read an app: PostgreSQL at 127\.0\.0\.1:\d+\/\w+ is unreachable/);
          assert.equal(err.details?.['retryable'], true);
          assert.ok(Date.now() - t0 < 2_500, `failed after ${Date.now() - t0} ms, not fast`);
          const okBefore = ok;
          proxy.up();
          await until(() => ok >= okBefore + 30);
          assert.equal(await waiter, 'locked');
          stop = true;
          await Promise.all(workers);
          for (const f of failures) {
            assert.ok(f instanceof DropkeyError && f.code === ErrorCodes.STORE && f.details?.['retryable'] === true, String(f));
          }
          const after = await s.getConnection('default');
          assert.equal(after!.refreshToken, sampleConnection().refreshToken, 'nothing lost');
          assert.ok(after!.version - 1 >= updatesOk, `version ${after!.version} after ${updatesOk} acknowledged updates`);
          process.stdout.write(`outage: ${ok} operations ok, ${failures.length} failed fast while down, recovered after ${proxy.accepted} connections\n`);
        } finally {
          await s.close();
          await proxy.close();
        }
      }));

    it('stores no secret in plain text: every text column of every table is scanned', () =>
      withSchema(async (schema, keyring) => {
        const s = await openPostgresStore({ connectionString: url, keyring, schema });
        const secrets = ['APPSECRET-plain-0001', 'sl.ACCESS-plain-0002', 'REFRESH-plain-0003', 'sl.ACCESS-plain-0004', 'REFRESH-plain-0005'];
        try {
          await s.createApp(sampleApp('backup', { secret: secrets[0]! }));
          await s.createConnection(sampleConnection('default', 'backup', { accessToken: secrets[1]!, refreshToken: secrets[2]! }));
          await s.updateConnection('default', { accessToken: secrets[3]!, refreshToken: secrets[4]! });
          await s.createConnection(sampleConnection('second', 'backup', { accessToken: secrets[1]!, refreshToken: secrets[2]! }));
          await s.withLock('refresh:default', { ttlMs: 5_000, waitMs: 0 }, async () => {});
          const dump = await withAdmin(async (c) => {
            const cols = await c.query<{ table_name: string; column_name: string }>(
              `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, column_name`,
              [schema],
            );
            assert.ok(cols.rows.length >= 20, 'sees every column');
            let text = '';
            for (const { table_name, column_name } of cols.rows) {
              const r = await c.query(`SELECT "${column_name}"::text AS v FROM "${schema}"."${table_name}"`);
              text += r.rows.map((x: { v: string | null }) => x.v ?? '').join('\n') + '\n';
            }
            return text;
          });
          assert.match(dump, /dk1\./, 'ciphertexts are there');
          for (const secret of secrets) {
            assert.ok(!dump.includes(secret), `found a secret in plain text`);
            assert.ok(!dump.includes(Buffer.from(secret).toString('base64').slice(0, 16)), 'found a secret in base64');
          }
          // And the raw columns refuse plain text outright (CHECK constraints).
          await assert.rejects(
            withAdmin((c) => c.query(`UPDATE "${schema}".connections SET refresh_token_enc = 'plain-token'`)),
            /check constraint/,
          );
        } finally {
          await s.close();
        }
      }));

    it('reads back exact millisecond times and big expiries as numbers', () =>
      withSchema(async (schema, keyring) => {
        const t = Date.UTC(2099, 11, 31, 23, 59, 59, 999);
        const s = await openPostgresStore({ connectionString: url, keyring, schema, clock: () => t });
        try {
          await s.createApp(sampleApp());
          await s.createConnection(sampleConnection('default', 'backup', { accessTokenExpiresAt: t + 1, lastRefreshAt: t - 1 }));
          const c = await s.getConnection('default');
          assert.equal(c!.createdAt, t);
          assert.equal(c!.accessTokenExpiresAt, t + 1);
          assert.equal(c!.lastRefreshAt, t - 1);
          assert.equal(typeof c!.version, 'number');
        } finally {
          await s.close();
        }
      }));

    it('key rotation re-encrypts every secret; the old key can then be dropped', () =>
      withSchema(async (schema, keyring) => {
        const s1 = await openPostgresStore({ connectionString: url, keyring, schema });
        await s1.createApp(sampleApp());
        await s1.createConnection(sampleConnection('default', 'backup'));
        await s1.close();
        const rotated = keyring.withNewActiveKey();
        const s2 = await openPostgresStore({ connectionString: url, keyring: rotated, schema });
        assert.deepEqual(await s2.reencryptSecrets(), { rewritten: 4, remaining: 0 });
        await s2.close();
        const s3 = await openPostgresStore({ connectionString: url, keyring: rotated.withoutKey(keyring.activeKeyId), schema });
        assert.equal((await s3.getConnection('default'))!.refreshToken, sampleConnection().refreshToken);
        assert.equal((await s3.getApp('backup'))!.secret, sampleApp().secret);
        await s3.close();
      }));

    it('concurrent creates of one name on two instances: one wins, the other gets ALREADY_EXISTS', () =>
      withSchema(async (schema, keyring) => {
        const a = await openPostgresStore({ connectionString: url, keyring, schema });
        const b = await openPostgresStore({ connectionString: url, keyring, schema });
        try {
          const r = await Promise.allSettled([a.createApp(sampleApp('same', { key: 'a' })), b.createApp(sampleApp('same', { key: 'b' }))]);
          assert.equal(r.filter((x) => x.status === 'fulfilled').length, 1);
          const lost = r.find((x) => x.status === 'rejected') as PromiseRejectedResult;
          assert.equal((lost.reason as DropkeyError).code, ErrorCodes.ALREADY_EXISTS);
        } finally {
          await a.close();
          await b.close();
        }
      }));
  });
}
