/**
 * dk.sdkAuth() with the official, unmodified SDK (dropbox@10.34.0, pointed at the emulator through its fetch
 * option, docs/emulator.md ("Pointing clients at it")): the SDK never holds a stale token, never sees the refresh token or the secret, and
 * concurrent SDK calls after expiry share one refresh.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { emulatorFetch } from '../helpers/dropbox-sdk.js';
import { makeRig, type Rig } from './setup.js';

const require = createRequire(import.meta.url);
const { Dropbox } = require('dropbox') as { Dropbox: new (o: Record<string, unknown>) => any };

let rig: Rig;
let refreshToken: string;
let secret: string;
before(async () => {
  rig = await makeRig({ listen: true, dropkey: { fetch: globalThis.fetch } });
  const a = await rig.appWithAccount({ name: 'sdk' });
  const g = await a.grant();
  refreshToken = g.refresh_token!;
  secret = (await rig.dk.store.getApp('sdk'))!.secret!;
  await rig.dk.import({ connection: 'sdk', app: 'sdk', refreshToken });
});
after(() => rig.close());

test('the SDK works through dropkey auth and refreshes through dropkey after expiry', async () => {
  const auth = await rig.dk.sdkAuth('sdk', { fetch: emulatorFetch(rig.emu.url) });
  const dbx = new Dropbox({ auth });
  const me = await dbx.usersGetCurrentAccount();
  assert.equal(me.status, 200);
  const up = await dbx.filesUpload({ path: '/dropkey-sdk.txt', contents: 'hello from the sdk' });
  assert.equal(up.result.name, 'dropkey-sdk.txt');

  await rig.advance(4 * 3600 + 30);
  await rig.emu.control.clearRequests();
  const results = await Promise.all([
    dbx.filesListFolder({ path: '' }),
    dbx.usersGetCurrentAccount(),
    dbx.filesDownload({ path: '/dropkey-sdk.txt' }),
  ]);
  assert.ok(results.every((r) => r.status === 200));
  assert.equal(Buffer.from(results[2].result.fileBinary).toString(), 'hello from the sdk');
  assert.equal(await rig.tokenCalls(), 1, 'one refresh, done by dropkey');
  assert.equal(auth.getAccessToken(), (await rig.stored('sdk'))!.accessToken);
});

test('the auth object exposes neither the refresh token nor the app secret', async () => {
  const auth = await rig.dk.sdkAuth('sdk');
  await auth.checkAndRefreshAccessToken();
  assert.equal(auth.getRefreshToken(), undefined);
  assert.equal(auth.getClientSecret(), undefined);
  assert.equal(auth.clientSecret, undefined);
  const dump = JSON.stringify(auth) + JSON.stringify(Object.entries(auth));
  assert.ok(!dump.includes(refreshToken));
  assert.ok(!dump.includes(secret));
  assert.ok(!JSON.stringify(auth).includes(auth.getAccessToken()!));
});
