/**
 * docs/decisions/0003-key-rotation.md, "an admin action in the UI": the web UI's master key page of a real `dropkey serve` on PostgreSQL
 * (DROPKEY_MASTER_KEY=NEW,OLD, as after step 2 of the procedure in docs/deploying.md) shows the secrets per key id and
 * re-encrypts every one under the active key; afterwards nothing is under the old key id, the store opens with the
 * new key alone, and the action is in the audit log.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { keyringFromMasterKey } from '../../src/store/cipher.js';
import { openStore } from '../../src/store/index.js';
import { withAdmin } from '../../src/store/postgres/test-helpers.test-support.js';
import { csrfOf, textOf, UiClient } from '../server/ui-client.js';
import { skipReason, startCluster } from './rig.js';

const skip = skipReason();

test('web UI: the master key page re-encrypts every secret under the active key', { skip: skip ?? false, timeout: 60_000 }, async () => {
  const c = await startCluster();
  try {
    await c.connection('c1');
    const oldId = keyringFromMasterKey(c.masterKey).activeKeyId;
    const newKey = randomBytes(32).toString('base64');
    const newId = keyringFromMasterKey(newKey).activeKeyId;
    const inst = await c.startInstance({ DROPKEY_MASTER_KEY: `${newKey},${c.masterKey}` });
    const setupLine = await inst.line(/\/setup\?token=/);
    const setupUrl = new URL(/(http\S+)/.exec(setupLine)![1]!);

    // A "browser without JavaScript" over real HTTP to the instance.
    const http = { app: { request: (url: string, init: RequestInit) => fetch(url, { ...init, redirect: 'manual' }) } };
    const browser = new UiClient(http as never, inst.url);
    const setup = await browser.page(`/setup${setupUrl.search}`);
    const password = 'correct horse battery staple';
    const made = await browser.post('/setup', { _csrf: csrfOf(setup), token: setupUrl.searchParams.get('token')!, email: 'ops@example.com', password, password2: password });
    assert.equal(made.status, 303, await made.text());

    const before = await browser.page('/master-key');
    assert.match(textOf(before), new RegExp(`${oldId}\\s+\\d+`), 'the old key id is listed with its secrets');
    assert.match(textOf(before), /secret\(s\) are under other keys/);

    // Without the CSRF token nothing happens.
    const forged = await browser.post('/master-key/rotate', {});
    assert.equal(forged.status, 403);

    const done = await browser.post('/master-key/rotate', { _csrf: csrfOf(before) });
    const doneText = textOf(await done.text());
    assert.equal(done.status, 200, doneText.slice(0, 500));
    assert.match(doneText, new RegExp(`every secret is under key ${newId}`));

    const left = await withAdmin(async (db) => {
      let n = 0;
      const tables = await db.query<{ table_name: string }>('SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [c.schema]);
      for (const { table_name } of tables.rows) {
        for (const row of (await db.query(`SELECT * FROM "${c.schema}"."${table_name}"`)).rows as Record<string, unknown>[]) {
          n += Object.values(row).filter((v) => typeof v === 'string' && v.startsWith(`dk1.${oldId}.`)).length;
        }
      }
      return n;
    });
    assert.equal(left, 0, 'no ciphertext under the old key id remains');
    const home = mkdtempSync(join(tmpdir(), 'dropkey-ui-rotate-'));
    try {
      const store = await openStore({ home, masterKey: newKey, databaseUrl: c.databaseUrl });
      assert.equal((await store.getApp('app'))?.secret, c.app.secret, 'the store opens and reads with the new key alone');
      assert.ok((await store.getConnection('c1'))?.refreshToken);
      await store.close();
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
    assert.match(textOf(await browser.page('/audit')), /keys\.rotated/);
  } finally {
    await c.close();
  }
});
