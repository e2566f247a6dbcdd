import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeRig, type Rig } from '../../test/connections/setup.js';
import { Dropkey } from './dropkey.js';
import { redact, redactText, safeLogger } from './redact.js';

test('redact masks secret fields at any depth and token-looking text', () => {
  const out = redact({
    connection: 'c',
    accessToken: 'sl.AAAAAAAAAAAAAAAA',
    nested: { refresh_token: 'rrrr', client_secret: 'ssss', list: [{ Authorization: 'Bearer xyz' }] },
    note: 'sent Bearer sl.abcdefghijklmnop to Dropbox',
    code: 'DROPKEY_NOT_FOUND',
    count: 3,
  });
  const text = JSON.stringify(out);
  for (const secret of ['sl.AAAAAAAAAAAAAAAA', 'rrrr', 'ssss', 'xyz', 'abcdefghijklmnop']) assert.ok(!text.includes(secret), `${secret} in ${text}`);
  assert.match(text, /DROPKEY_NOT_FOUND/, 'error codes are not secrets');
  assert.match(text, /"count":3/);
  assert.equal(redactText('Basic YWJjOmRlZg=='), 'Basic [redacted]');
});

let rig: Rig;
const lines: string[] = [];
before(async () => {
  const record = (level: string) => (obj: object, msg?: string) => lines.push(`${level} ${msg ?? ''} ${JSON.stringify(obj)}`);
  rig = await makeRig({ dropkey: { logger: { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') } } });
});
after(() => rig.close());

test('a whole lifecycle logs useful lines and never a secret', async () => {
  const a = await rig.appWithAccount({ name: 'logged' });
  const g = await a.grant();
  await rig.dk.import({ connection: 'l', app: 'logged', refreshToken: g.refresh_token! });
  await rig.advance(4 * 3600);
  await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 1 });
  const t = await rig.dk.getAccessToken('l');
  await rig.dk.revoke('l');
  const log = lines.join('\n');
  assert.match(log, /access token refreshed/);
  assert.match(log, /retrying/);
  const secret = (await rig.dk.store.getApp('logged'))!.secret!;
  for (const s of [g.refresh_token!, g.access_token, t, secret]) assert.ok(!log.includes(s), 'a secret reached the log');
});

test('safeLogger tolerates partial loggers', () => {
  const got: unknown[] = [];
  const l = safeLogger({ warn: (o: object) => got.push(o) });
  l.info({ a: 1 });
  l.warn({ token: 'x' });
  assert.deepEqual(got, [{ token: '[redacted]' }]);
});

test('Dropkey.fromEnv reads DROPKEY_HOME, DROPKEY_MASTER_KEY and the Dropbox URLs', async () => {
  const dk = await Dropkey.fromEnv(
    { DROPKEY_HOME: rig.home, DROPKEY_MASTER_KEY: rig.masterKey, DROPKEY_DROPBOX_URL: rig.emu.url },
    { fetch: rig.emu.fetch as typeof fetch },
  );
  try {
    assert.equal(dk.urls.token, `${rig.emu.url}/oauth2/token`);
    assert.deepEqual((await dk.listApps()).map((x) => x.name), ['logged']);
  } finally {
    await dk.close();
  }
});
