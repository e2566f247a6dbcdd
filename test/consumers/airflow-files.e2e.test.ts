/**
 * The agent's `airflow` output in an Airflow LocalFilesystemBackend connections file holding three other
 * connections: 10 rewrites by the built `dropkey agent --once`, each after the clocks moved 5 hours, in the JSON,
 * YAML and .env forms. After every rewrite the file loads the way Airflow loads it
 * (fixtures/airflow_local_filesystem.py, run with Debian's python3 and PyYAML), the Dropbox connection holds a
 * token the emulator accepts in the field the hook reads, and the other three connections are unchanged
 * byte-for-byte.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AIRFLOW_FILES, aroundDropboxEntry } from '../../src/agent/outputs/airflow.test-support.js';
import type { AirflowOutputOptions } from '../../src/agent/outputs/types.js';
import { CliEnv } from '../cli/cli-helpers.js';
import { snapshotOf } from './consumer-helpers.js';

const PYTHON = '/usr/bin/python3';
const LOADER = fileURLToPath(new URL('./fixtures/airflow_local_filesystem.py', import.meta.url));
function pyyamlMissing(): string | false {
  try {
    execFileSync(PYTHON, ['-c', 'import yaml'], { stdio: 'ignore', env: { PATH: '/usr/bin:/bin' } });
    return false;
  } catch {
    return `PyYAML is not installed for ${PYTHON} (Debian package "python3-yaml")`;
  }
}

async function airflowLoad(path: string): Promise<Record<string, Record<string, unknown>>> {
  const r = await promisify(execFile)(PYTHON, [LOADER, path], { env: { PATH: '/usr/bin:/bin' } });
  return JSON.parse(r.stdout);
}

for (const form of ['json', 'yaml', 'env'] as const) {
  const spec = AIRFLOW_FILES[form];
  const field: AirflowOutputOptions['field'] = form === 'yaml' ? 'login' : 'password';
  test(`airflow ${form} (${field}): 10 rewrites over 50 simulated hours; Airflow loads every one; the other three unchanged`, { skip: pyyamlMissing(), timeout: 180_000 }, async () => {
    const t = await CliEnv.create();
    after(() => t.close());
    const { app, accountId, token: g } = await t.connect('dag');
    const path = join(t.home, spec.name);
    writeFileSync(path, spec.text, { mode: 0o600 });
    const original = await airflowLoad(path);
    const [head, tail] = aroundDropboxEntry(form);
    let previous = '';
    for (let round = 1; round <= 10; round++) {
      await t.advanceClock(5 * 3600);
      // The built agent refreshes and rewrites the file (`--once`, its clock following the emulator's).
      const r = await t.run(['agent', '--once', '--connection', 'dag', '--output', `airflow:${path}`, '--conn-id', 'dropbox_default', '--field', field, '--form', form]);
      assert.equal(r.code, 0, r.stderr);
      const snap = await snapshotOf(t, 'dag', app.key);
      assert.notEqual(snap.accessToken, previous);
      previous = snap.accessToken;
      const text = readFileSync(path, 'utf8');
      assert.equal(statSync(path).mode & 0o777, 0o600, `round ${round}: the file kept its mode`);
      assert.ok(text.startsWith(head) && text.endsWith(tail), `round ${round}: the text around the Dropbox connection is byte-for-byte the original`);
      assert.ok(!text.includes(g.refresh_token!) && !text.includes(app.secret!), 'no refresh token or app secret in the file');
      const loaded = await airflowLoad(path);
      for (const other of spec.others) assert.deepEqual(loaded[other], original[other], `round ${round}: ${other}`);
      const dbx = loaded['dropbox_default']!;
      assert.equal(dbx['conn_type'], 'dropbox');
      assert.equal(dbx[field], snap.accessToken, `round ${round}: the token is in ${field}`);
      const extra = dbx['extra_dejson'] as Record<string, string>;
      assert.equal(Date.parse(extra['expires_at']!), Math.floor(snap.expiresAt!.getTime() / 1000) * 1000);
      assert.equal(extra['account_id'], accountId);
      const res = await fetch(`${t.emu.url}/2/users/get_current_account`, { method: 'POST', headers: { authorization: `Bearer ${dbx[field]}` } });
      assert.equal(res.status, 200, `round ${round}: the emulator accepts the token Airflow reads`);
    }
  });
}
