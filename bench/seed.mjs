// Bulk seeding for the benchmarks with many connections (token-many.mjs, list-many.mjs).
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

export const TOKEN_LIFE_MS = 4 * 3600_000;
/** Fixed-length random text (base64url), so that every answer has the same size and wrk's byte check covers all. */
export const fixed = (n) => randomBytes(Math.ceil((n * 3) / 4)).toString('base64url').slice(0, n);

/**
 * Writes `COUNT` connections c0..c(COUNT-1) of app "demo" straight into a dropkey store, in transactions of 1,000 rows
 * (SQLite) or one INSERT ... SELECT FROM unnest() per 1,000 rows (PostgreSQL): seconds at 100,000. Every secret is
 * encrypted with the store's own keyring and bound to its row like the store does, so reads cost what real ones
 * cost. Access tokens (fixed length, so answers have one size) are valid for 4 hours; Dropbox never issued them.
 */
export async function seedBulk(root, home, masterKey, databaseUrl, COUNT) {
  const { openStores } = await import(`${root}dist/store/index.js`);
  const { secretContext } = await import(`${root}dist/store/cipher.js`);
  const stores = await openStores({ home, masterKey, ...(databaseUrl ? { databaseUrl } : {}) });
  const now = Date.now();
  try {
    await stores.core.createApp({ name: 'demo', key: `bench${fixed(10)}`, secret: fixed(15), scopes: ['account_info.read'], team: false, access: 'full' });
    const k = stores.keyring;
    const rowOf = (i) => {
      const name = `c${i}`;
      return {
        name,
        app: 'demo',
        account_id: `dbid:${fixed(38)}`,
        email: `user${i}@example.com`,
        display_name: `User ${i}`,
        scopes: ['account_info.read'],
        access_token_enc: k.encrypt(`sl.u.${fixed(150)}`, secretContext('connection', name, 'access_token')),
        access_token_expires_at: now + TOKEN_LIFE_MS,
        refresh_token_enc: k.encrypt(fixed(64), secretContext('connection', name, 'refresh_token')),
      };
    };
    const BATCH = 1000;
    if (stores.kind === 'sqlite') {
      const Database = (await import('better-sqlite3')).default;
      const db = new Database(join(home, 'dropkey.db'), { timeout: 10_000 });
      const ins = db.prepare(`INSERT INTO connections (name, app, account_id, team_id, email, display_name, team_name, scopes,
        access_token_enc, access_token_expires_at, refresh_token_enc, state, last_error, last_refresh_at, created_at, updated_at, version)
        VALUES (@name, @app, @account_id, NULL, @email, @display_name, NULL, @scopes, @access_token_enc, @access_token_expires_at,
        @refresh_token_enc, 'active', NULL, ${now}, ${now}, ${now}, 1)`);
      for (let i = 0; i < COUNT; i += BATCH) {
        const rows = Array.from({ length: Math.min(BATCH, COUNT - i) }, (_, j) => ({ ...rowOf(i + j), scopes: JSON.stringify(['account_info.read']) }));
        db.transaction(() => rows.forEach((r) => ins.run(r)))();
      }
      db.close();
    } else {
      const pg = (await import('pg')).default;
      const schema = new URL(databaseUrl).searchParams.get('schema');
      const client = new pg.Client({ connectionString: databaseUrl.replace(/\?.*$/, '') });
      await client.connect();
      try {
        for (let i = 0; i < COUNT; i += BATCH) {
          const rows = Array.from({ length: Math.min(BATCH, COUNT - i) }, (_, j) => rowOf(i + j));
          const col = (f) => rows.map(f);
          await client.query(
            `INSERT INTO "${schema}".connections (name, app, account_id, team_id, email, display_name, team_name, scopes,
               access_token_enc, access_token_expires_at, refresh_token_enc, state, last_error, last_refresh_at, created_at, updated_at, version)
             SELECT n, 'demo', a, NULL, e, d, NULL, ARRAY['account_info.read'], at, x, rt, 'active', NULL, $7, $7, $7, 1
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $8::text[]) AS u(n, a, e, d, at, x, rt)`,
            [col((r) => r.name), col((r) => r.account_id), col((r) => r.email), col((r) => r.display_name), col((r) => r.access_token_enc), col((r) => r.access_token_expires_at), now, col((r) => r.refresh_token_enc)],
          );
        }
      } finally {
        await client.end();
      }
    }
  } finally {
    await stores.close();
  }
}

