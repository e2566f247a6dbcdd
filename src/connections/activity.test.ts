/**
 * The facade's activity sink (DropkeyOptions.onActivity): every change it makes is reported once, with the
 * connection event it causes, and a sink that fails never fails the change.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ErrorCodes, DropkeyError } from '../errors.js';
import { makeRig, type Rig } from '../../test/connections/setup.js';
import { driveConsent } from '../../test/helpers/consent.js';
import type { Activity } from './types.js';

describe('activity sink', () => {
  let rig: Rig;
  const seen: Activity[] = [];
  let failSink = false;
  const warnings: string[] = [];
  before(async () => {
    rig = await makeRig({
      dropkey: {
        onActivity: (a) => {
          if (failSink) throw new Error('audit table is gone');
          seen.push(a);
        },
        logger: { warn: (_o: object, msg?: string) => void warnings.push(msg ?? '') },
      },
    });
  });
  after(() => rig.close());

  test('apps, import, reconnect, refresh and revoke are reported with the events webhooks send', async () => {
    const a = await rig.appWithAccount({ name: 'main' });
    assert.deepEqual(seen.map((x) => [x.action, x.target]), [['app.created', 'main']]);
    assert.equal(JSON.stringify(seen).includes('secret":"'), false, 'no secret in the details');
    await rig.dk.updateApp('main', { access: 'full' });
    assert.deepEqual(seen.at(-1)?.details['secret'], 'kept');

    const g = await a.grant();
    await rig.dk.import({ connection: 'alpha', app: 'main', refreshToken: g.refresh_token! });
    const created = seen.at(-1)!;
    assert.equal(created.action, 'connection.created');
    assert.equal(created.details['mode'], 'import');
    assert.equal(created.event?.type, 'connection.created');
    assert.equal(created.event?.data['account_id'], a.accountId);
    assert.ok(!JSON.stringify(created).includes(g.refresh_token!), 'never a token');

    await rig.dk.import({ connection: 'alpha', app: 'main', refreshToken: g.refresh_token! });
    assert.equal(seen.at(-1)?.event?.type, 'connection.reconnected');

    await rig.dk.refresh('alpha', { force: true });
    assert.deepEqual([seen.at(-1)?.action, seen.at(-1)?.event], ['connection.refreshed', undefined]);

    const n = seen.length;
    await assert.rejects(rig.dk.refresh('nosuch', { force: true }), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.NOT_FOUND);
    assert.equal(seen.length, n, 'an unknown connection is not a failed refresh');

    const r = await rig.dk.revoke('alpha');
    const revoked = seen.at(-1)!;
    assert.equal(revoked.action, 'connection.revoked');
    assert.deepEqual(revoked.details, { revoked_at_dropbox: r.revokedAtDropbox });
    assert.deepEqual(revoked.event, {
      type: 'connection.revoked',
      connection: 'alpha',
      data: { app: 'main', account_id: a.accountId, email: a.email, revoked_at_dropbox: true },
    });

    await rig.dk.removeApp('main');
    assert.deepEqual([seen.at(-1)?.action, seen.at(-1)?.target], ['app.removed', 'main']);
  });

  test('a refresh Dropbox refuses is reported with its error (the announcer classifies it)', async () => {
    const a = await rig.appWithAccount({ name: 'other' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'beta', app: 'other', refreshToken: g.refresh_token! });
    await rig.emu.control.fault({ route: 'oauth2/token', status: 500, count: 20 });
    try {
      await assert.rejects(rig.dk.refresh('beta', { force: true }));
    } finally {
      await rig.emu.control.clearFaults();
    }
    const failed = seen.at(-1)!;
    assert.equal(failed.action, 'connection.refresh_failed');
    assert.equal(failed.details['code'], ErrorCodes.DROPBOX_UNAVAILABLE);
    assert.ok(failed.error instanceof DropkeyError);
  });

  test('a sink that throws never fails the action: the revoke succeeds and a warning is logged', async () => {
    const a = await rig.appWithAccount({ name: 'third' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'gamma', app: 'third', refreshToken: g.refresh_token! });
    failSink = true;
    try {
      const r = await rig.dk.revoke('gamma');
      assert.equal(r.revokedAtDropbox, true);
    } finally {
      failSink = false;
    }
    assert.equal(await rig.dk.store.getConnection('gamma'), undefined, 'revoked and deleted');
    assert.ok(warnings.includes('could not record the action in the audit log'), warnings.join('\n'));
  });
});

describe('activity sink: browser login', () => {
  test('a finished login is reported as connection.created (mode login) with its event', async () => {
    const seen: Activity[] = [];
    const rig = await makeRig({ listen: true, dropkey: { fetch: globalThis.fetch, onActivity: (a) => void seen.push(a) } });
    try {
      const app = await rig.appWithAccount({ name: 'web' });
      const pending = await rig.dk.startLogin({ app: 'web', connection: 'viabrowser', redirectUri: 'http://127.0.0.1:53682/callback' });
      const consent = await driveConsent(pending.authorizeUrl, { account: app.email });
      await rig.dk.finishLogin({ pending, callbackUrl: consent.location! });
      const last = seen.at(-1)!;
      assert.deepEqual([last.action, last.target, last.details['mode'], last.event?.type], ['connection.created', 'viabrowser', 'login', 'connection.created']);
    } finally {
      await rig.close();
    }
  });
});
