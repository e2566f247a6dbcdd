// docs/decisions/0001-encryption-at-rest.md: "The raw SQLite file and the data directory contain none of the stored secrets in plain text."
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { sampleApp, sampleConnection } from './contract/core.test-support.js';
import { openStore } from './index.js';

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

/** Every file's bytes, searched for each secret as UTF-8 and UTF-16 (SQLite can store text in either). */
function leaks(dir: string, secrets: string[]): string[] {
  const found: string[] = [];
  for (const file of filesUnder(dir)) {
    const bytes = readFileSync(file);
    for (const s of secrets) {
      for (const enc of ['utf8', 'utf16le'] as const) {
        if (bytes.includes(Buffer.from(s, enc))) found.push(`${file} contains a secret (${enc})`);
      }
    }
  }
  return found;
}

it('no stored secret appears in plain text anywhere in the data directory (DB, WAL, SHM, key file)', async () => {
  const home = join(mkdtempSync(join(tmpdir(), 'dropkey-at-rest-')), 'data');
  try {
    const secret = (label: string) => `${label}-${randomBytes(18).toString('base64url')}`;
    const appSecret = secret('appsecret');
    const access1 = `sl.${secret('access1')}`;
    const access2 = `sl.${secret('access2')}`;
    const refresh1 = secret('refresh1');
    const refresh2 = secret('refresh2');
    const all = [appSecret, access1, access2, refresh1, refresh2];

    const s = await openStore({ home, warn: () => {} });
    await s.createApp(sampleApp('backup', { secret: appSecret }));
    await s.createConnection(sampleConnection('default', 'backup', { accessToken: access1, refreshToken: refresh1 }));
    await s.createConnection(sampleConnection('second', 'backup', { accessToken: access2, refreshToken: refresh2 }));
    for (let i = 0; i < 20; i++) await s.updateConnection('default', { accessToken: `${access1}-${i}`, accessTokenExpiresAt: i });
    all.push(...Array.from({ length: 20 }, (_, i) => `${access1}-${i}`));

    // While open, the latest pages live in dropkey.db-wal: check it is really there and scanned.
    const names = readdirSync(home).sort();
    assert.deepEqual(names, ['dropkey.db', 'dropkey.db-shm', 'dropkey.db-wal', 'master.key']);
    assert.ok(statSync(join(home, 'dropkey.db-wal')).size > 0);
    // The scan does find non-secret text that was stored, so it would find a secret stored the same way.
    assert.ok(readFileSync(join(home, 'dropkey.db-wal')).includes(Buffer.from('franz@example.com')));
    assert.deepEqual(leaks(home, all), []);

    assert.equal((await s.getConnection('second'))!.refreshToken, refresh2, 'the secrets are stored, just not in plain text');
    await s.deleteConnection('second'); // freed pages keep old bytes; they must be ciphertext too
    await s.close();
    assert.deepEqual(leaks(home, all), []);
  } finally {
    rmSync(join(home, '..'), { recursive: true, force: true });
  }
});
