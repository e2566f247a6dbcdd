/**
 * Faults at the token endpoint, from the emulator's control API (POST /_emulator/faults on route "oauth2/token"):
 * each is retried and succeeds, or fails with the right message; in every case the stored refresh token is
 * unchanged afterwards (read back and decrypted from the store).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { DropkeyError, ErrorCodes } from '../../src/errors.js';
import { makeRig, type Rig } from './setup.js';
import { adviceLines } from '../../src/cli/fix.js';

let rig: Rig;
let original: string;
const NAME = 'faulty';

before(async () => {
  // Real HTTP on 127.0.0.1; a short per-attempt timeout so the slow-endpoint case stays fast.
  rig = await makeRig({ listen: true, dropkey: { fetch: globalThis.fetch, retry: { attemptTimeoutMs: 400, maxTotalWaitMs: 10_000 } } });
  const a = await rig.appWithAccount({ name: 'faults' });
  const g = await a.grant();
  await rig.dk.import({ connection: NAME, app: 'faults', refreshToken: g.refresh_token! });
  original = g.refresh_token!;
});
after(() => rig.close());

beforeEach(async () => {
  await rig.emu.control.clearFaults();
  // Expire the token on both clocks so the next getAccessToken must refresh.
  await rig.advance(4 * 3600 + 1);
  await rig.emu.control.clearRequests();
  rig.sleeps.length = 0;
});

async function refreshTokenUnchanged(): Promise<void> {
  const s = await rig.stored(NAME);
  assert.equal(s?.refreshToken, original, 'the stored refresh token is unchanged');
}

async function works(token: string): Promise<void> {
  assert.equal((await rig.emu.rpc('users/get_current_account', undefined, token)).status, 200);
}

async function failure(p: Promise<unknown>): Promise<DropkeyError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DropkeyError, String(err));
    return err;
  }
  assert.fail('expected a failure');
}

describe('retried, then succeeded', () => {
  test('429 with Retry-After: waits exactly what Dropbox asked', async () => {
    await rig.emu.control.fault({ route: 'oauth2/token', status: 429, retry_after: 3, count: 2 });
    const t = await rig.dk.getAccessToken(NAME);
    await works(t);
    assert.deepEqual(rig.sleeps, [3000, 3000]);
    assert.equal(await rig.tokenCalls(), 3);
    await refreshTokenUnchanged();
    assert.equal((await rig.dk.get(NAME)).lastError, null);
  });

  test('500 then 503: exponential back-off', async () => {
    await rig.emu.control.fault({ route: 'oauth2/token', status: 500, count: 1 });
    await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 1 });
    const t = await rig.dk.getAccessToken(NAME);
    await works(t);
    assert.equal(rig.sleeps.length, 2);
    assert.ok(rig.sleeps[1]! > rig.sleeps[0]!, `back-off grows: ${rig.sleeps}`);
    await refreshTokenUnchanged();
  });

  test('a slow token endpoint: the attempt times out and is retried', async () => {
    await rig.emu.control.fault({ route: 'oauth2/token', status: 200, delay_ms: 3000, count: 1 });
    const t = await rig.dk.getAccessToken(NAME);
    await works(t);
    assert.equal(rig.sleeps.length, 1);
    await refreshTokenUnchanged();
  });

  test('a reset connection is retried', async () => {
    await rig.emu.control.fault({ route: 'oauth2/token', status: 500, reset_connection: true, count: 1 });
    const t = await rig.dk.getAccessToken(NAME);
    await works(t);
    assert.equal(rig.sleeps.length, 1);
    await refreshTokenUnchanged();
  });
});

describe('failed with the right message', () => {
  test('503 on every attempt → DROPBOX_UNAVAILABLE after 4 attempts; lastError recorded', async () => {
    await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 10 });
    const err = await failure(rig.dk.getAccessToken(NAME));
    assert.equal(err.code, ErrorCodes.DROPBOX_UNAVAILABLE);
    assert.match(err.message, /after 4 attempts/);
    assert.match(err.message, /503/);
    assert.equal(await rig.tokenCalls(), 4);
    const info = await rig.dk.get(NAME);
    assert.equal(info.state, 'active', 'a transient failure never marks the connection for re-auth');
    assert.match(info.lastError ?? '', /503/);
    await refreshTokenUnchanged();
  });

  test('a Retry-After longer than the wait budget fails at once instead of waiting', async () => {
    await rig.emu.control.fault({ route: 'oauth2/token', status: 429, retry_after: 3600, count: 1 });
    const err = await failure(rig.dk.getAccessToken(NAME));
    assert.equal(err.code, ErrorCodes.DROPBOX_UNAVAILABLE);
    assert.match(err.message, /429/);
    assert.deepEqual(rig.sleeps, []);
    await refreshTokenUnchanged();
  });

  test('a failing proactive refresh keeps serving the current token while it is still valid', async () => {
    await rig.emu.control.clearFaults();
    const good = await rig.dk.getAccessToken(NAME);
    // 200 s before expiry: inside the 300 s margin, so a refresh is attempted, and it fails.
    const exp = (await rig.dk.get(NAME)).expiresAt!;
    rig.clock.now = exp - 200_000;
    await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 10 });
    assert.equal(await rig.dk.getAccessToken(NAME), good);
    // A cooldown follows: the next calls use the working token without another round of attempts.
    const calls = await rig.tokenCalls();
    assert.equal(await rig.dk.getAccessToken(NAME), good);
    assert.equal(await rig.tokenCalls(), calls, 'no new attempt during the cooldown');
    // But not when the caller needs more than what is left.
    const err = await failure(rig.dk.getAccessToken(NAME, { minValidSeconds: 600 }));
    assert.equal(err.code, ErrorCodes.DROPBOX_UNAVAILABLE);
    await refreshTokenUnchanged();
  });

  test('a revoked refresh token → invalid_grant → REAUTH_REQUIRED with the exact command; nothing lost', async () => {
    await rig.emu.control.clearFaults();
    const t = await rig.dk.getAccessToken(NAME, { forceRefresh: true });
    assert.equal((await rig.emu.rpc('auth/token/revoke', undefined, t)).status, 200);
    await rig.advance(4 * 3600);
    const err = await failure(rig.dk.getAccessToken(NAME));
    assert.equal(err.code, ErrorCodes.REAUTH_REQUIRED);
    assert.equal(adviceLines(err).at(-1), 'Run: dropkey login --connection faulty --app faults');
    assert.match(err.message, /refresh token/);
    assert.equal((await rig.stored(NAME))?.state, 'needs_reauth');
    await refreshTokenUnchanged();
  });
});
