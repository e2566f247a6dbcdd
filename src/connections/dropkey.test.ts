import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { errorTag } from '../dropbox/errors.js';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { makeRig, type Rig } from '../../test/connections/setup.js';
import { validateName } from './names.js';
import { adviceLines, adviceText, fixCommand } from '../cli/fix.js';

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp): Promise<DropkeyError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DropkeyError, `expected a DropkeyError, got ${String(err)}`);
    assert.equal(err.code, code, `${err.code}: ${err.message}`);
    // The message and the advice as the CLI prints it: the hint, then the fix as a command (src/cli/fix.ts).
    if (re) assert.match(`${err.message}\n${adviceLines(err).join('\n')}`, re);
    return err;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

describe('names', () => {
  test('accepts ids and refuses everything else with a hint', () => {
    for (const ok of ['default', 'dropbox_default', 'a', 'A.b-c_9', 'x'.repeat(64)]) assert.equal(validateName('connection', ok), ok);
    for (const bad of ['', '-x', '_x', 'a b', 'a/b', 'é', 'x'.repeat(65), 'a\n', '.hidden']) {
      assert.throws(() => validateName('connection', bad), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.BAD_INPUT && /--connection|letter or digit/.test(`${e.message} ${e.hint}`));
    }
  });
});

describe('apps', () => {
  let rig: Rig;
  before(async () => {
    rig = await makeRig();
  });
  after(() => rig.close());

  test('add, list, get, remove; the secret never comes back', async () => {
    const info = await rig.dk.addApp({ name: 'backup', key: 'abc123key', secret: '  s3cretvalue\n', scopes: ['files.content.read files.metadata.read'] });
    assert.deepEqual(info.scopes, ['files.content.read', 'files.metadata.read']);
    assert.equal(info.hasSecret, true);
    assert.ok(!JSON.stringify(info).includes('s3cretvalue'));
    assert.deepEqual((await rig.dk.listApps()).map((a) => a.name), ['backup']);
    assert.equal((await rig.dk.getApp('backup')).key, 'abc123key');
    const stored = await rig.dk.store.getApp('backup');
    assert.equal(stored?.secret, 's3cretvalue', 'pasted whitespace is trimmed');
    await rig.dk.removeApp('backup');
    await rejectsWith(rig.dk.getApp('backup'), ErrorCodes.NOT_FOUND, /dropkey app add --name backup/);
  });

  test('an app in use is not removed: the message names ten of its connections, the fix all of them', async () => {
    await rig.dk.addApp({ name: 'busy', key: 'busykey123' });
    const names = Array.from({ length: 12 }, (_, i) => `busy-${String(i).padStart(2, '0')}`);
    for (const name of names) {
      await rig.dk.store.createConnection({ name, app: 'busy', accountId: `dbid:${name}`, teamId: null, email: null, displayName: null, teamName: null, scopes: [], accessToken: 'sl.x', accessTokenExpiresAt: null, refreshToken: null, state: 'active', lastError: null, lastRefreshAt: null });
    }
    const err = await rejectsWith(rig.dk.removeApp('busy'), ErrorCodes.BAD_INPUT, /still used by connections "busy-00", .*"busy-09" and others\./);
    assert.doesNotMatch(err.message, /busy-10/);
    assert.deepEqual(err.fix, { action: 'revoke', connections: names });
    assert.equal((await rig.dk.getApp('busy')).name, 'busy', 'the app stays');
    for (const name of names) await rig.dk.store.deleteConnection(name);
    await rig.dk.removeApp('busy');
  });

  test('bad input is refused with what to do next', async () => {
    await rejectsWith(rig.dk.addApp({ name: 'bad name', key: 'abc123' }), ErrorCodes.BAD_INPUT);
    await rejectsWith(rig.dk.addApp({ name: 'ok', key: '' }), ErrorCodes.BAD_INPUT, /App Console/);
    await rejectsWith(rig.dk.addApp({ name: 'ok', key: 'has space' }), ErrorCodes.BAD_INPUT);
    assert.equal((await rig.dk.addApp({ name: 'dashed', key: 'dropkey-demo-app' })).key, 'dropkey-demo-app', 'servers other than Dropbox may use dashes');
    await rejectsWith(rig.dk.addApp({ name: 'ok', key: 'abcd1234', secret: 'abcd1234' }), ErrorCodes.BAD_INPUT, /secret/);
    await rejectsWith(rig.dk.addApp({ name: 'ok', key: 'abcd1234', scopes: ['files content'] , access: 'everything' as never }), ErrorCodes.BAD_INPUT);
    await rig.dk.addApp({ name: 'dup', key: 'abcd1234' });
    const up = await rig.dk.updateApp('dup', { secret: ' newsecret99\n', scopes: ['files.content.read'], access: 'app_folder' });
    assert.equal(up.hasSecret, true);
    assert.deepEqual(up.scopes, ['files.content.read']);
    assert.equal(up.access, 'app_folder');
    assert.equal((await rig.dk.store.getApp('dup'))?.secret, 'newsecret99');
    assert.equal((await rig.dk.updateApp('dup', { secret: null })).hasSecret, false);
    await rejectsWith(rig.dk.updateApp('dup', { key: 'bad key' }), ErrorCodes.BAD_INPUT);
    await rejectsWith(rig.dk.updateApp('dup', { secret: 'abcd1234' }), ErrorCodes.BAD_INPUT, /same as the app key/);
    await rejectsWith(rig.dk.updateApp('nope', { team: true }), ErrorCodes.NOT_FOUND);
    await rejectsWith(rig.dk.addApp({ name: 'dup', key: 'abcd1234' }), ErrorCodes.ALREADY_EXISTS, /dropkey app remove dup/);
  });
});

describe('import and tokens', () => {
  let rig: Rig;
  before(async () => {
    rig = await makeRig();
  });
  after(() => rig.close());

  test('a refresh token is checked by one refresh, validated, and then served without calling Dropbox', async () => {
    const a = await rig.appWithAccount({ name: 'imp' });
    const g = await a.grant();
    await rig.emu.control.clearRequests();
    const r = await rig.dk.import({ connection: 'c1', app: 'imp', refreshToken: `${g.refresh_token}\n` });
    assert.equal(r.created, true);
    assert.equal(r.refreshable, true);
    assert.equal(r.connection.email, a.email);
    assert.equal(r.connection.accountId, a.accountId);
    assert.ok(r.connection.scopes.includes('files.content.read'), `scopes ${r.connection.scopes}`);
    assert.ok(r.connection.expiresAt !== null && r.connection.expiresAt > rig.clock.now + 3600_000);
    assert.equal(await rig.tokenCalls(), 1);
    assert.ok(!JSON.stringify(r).includes(g.refresh_token!), 'the result carries no refresh token');

    const t1 = await rig.dk.getToken('c1');
    const t2 = await rig.dk.getAccessToken('c1');
    assert.equal(t1.accessToken, t2);
    assert.equal(t1.accountId, a.accountId);
    assert.equal(await rig.tokenCalls(), 1, 'a fresh token needs no refresh');
    assert.ok(!('refreshToken' in t1));
    const me = await rig.emu.rpc('users/get_current_account', undefined, t2);
    assert.equal(me.status, 200);
    assert.equal((await rig.stored('c1'))?.refreshToken, g.refresh_token);
  });

  test('an expired token: 25 concurrent callers share one refresh; the refresh token is kept', async () => {
    const before = (await rig.stored('c1'))!;
    await rig.advance(4 * 3600 + 10);
    await rig.emu.control.clearRequests();
    const tokens = await Promise.all(Array.from({ length: 25 }, () => rig.dk.getAccessToken('c1')));
    assert.equal(new Set(tokens).size, 1);
    assert.notEqual(tokens[0], before.accessToken);
    assert.equal(await rig.tokenCalls(), 1);
    const after = (await rig.stored('c1'))!;
    assert.equal(after.refreshToken, before.refreshToken);
    assert.equal((await rig.emu.rpc('users/get_current_account', undefined, tokens[0]!)).status, 200);
    const info = await rig.dk.get('c1');
    assert.equal(info.lastRefreshAt, rig.clock.now);
  });

  test('proactive: refreshes inside the margin and when minValidSeconds asks for more', async () => {
    const info = await rig.dk.get('c1');
    await rig.emu.control.clearRequests();
    const left = (info.expiresAt! - rig.clock.now) / 1000;
    await rig.dk.getAccessToken('c1', { minValidSeconds: Math.floor(left) - 60 });
    assert.equal(await rig.tokenCalls(), 0);
    await rig.dk.getAccessToken('c1', { minValidSeconds: Math.ceil(left) + 60 });
    assert.equal(await rig.tokenCalls(), 1);
    await rig.advance(Math.ceil((await rig.dk.get('c1')).expiresAt! - rig.clock.now) / 1000 - 200);
    await rig.dk.getAccessToken('c1');
    assert.equal(await rig.tokenCalls(), 2, 'within the 300 s margin');
    await rejectsWith(rig.dk.getAccessToken('c1', { minValidSeconds: -1 }), ErrorCodes.BAD_INPUT);
    await rejectsWith(rig.dk.getAccessToken('nope'), ErrorCodes.NOT_FOUND, /dropkey login --connection nope/);
  });

  test('refresh(force) always refreshes; refresh() does not when fresh', async () => {
    await rig.emu.control.clearRequests();
    await rig.dk.refresh('c1');
    assert.equal(await rig.tokenCalls(), 0);
    const before = await rig.dk.getAccessToken('c1');
    await rig.dk.refresh('c1', { force: true });
    assert.equal(await rig.tokenCalls(), 1);
    assert.notEqual(await rig.dk.getAccessToken('c1'), before);
  });

  test('refresh(force) that fails while the old token works throws (the cause\'s code, refreshed: false); token readers keep the old token', async () => {
    const before = await rig.dk.getAccessToken('c1');
    await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 20 });
    try {
      const err = await rejectsWith(rig.dk.refresh('c1', { force: true }), ErrorCodes.DROPBOX_UNAVAILABLE, /^Refreshing connection "c1" failed: .* The current access token still works until \d{4}-/);
      assert.equal(err.details?.['refreshed'], false);
      assert.ok(!`${err.message} ${err.hint}`.includes(before));
      assert.equal(await rig.dk.getAccessToken('c1'), before, 'a token request is not broken by the failed refresh');
    } finally {
      await rig.emu.control.clearFaults();
    }
    const after = await rig.dk.refresh('c1', { force: true });
    assert.equal(after.lastError, null);
    assert.notEqual(await rig.dk.getAccessToken('c1'), before);
  });

  test('5xx and 429 from the token endpoint are retried (Retry-After honoured)', async () => {
    await rig.advance(4 * 3600);
    await rig.emu.control.clearRequests();
    rig.sleeps.length = 0;
    await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 1 });
    await rig.emu.control.fault({ route: 'oauth2/token', status: 429, retry_after: 7, count: 1 });
    const t = await rig.dk.getAccessToken('c1');
    assert.equal((await rig.emu.rpc('users/get_current_account', undefined, t)).status, 200);
    assert.equal(await rig.tokenCalls(), 3);
    assert.ok(rig.sleeps.includes(7000), `sleeps ${rig.sleeps}`);
  });

  test('a caller that gives up (abort) does not cancel the refresh the others wait on', async () => {
    await rig.advance(4 * 3600);
    await rig.emu.control.clearRequests();
    await rig.emu.control.fault({ route: 'oauth2/token', status: 200, delay_ms: 150, count: 1 });
    const ac = new AbortController();
    const first = rig.dk.getAccessToken('c1', { signal: ac.signal });
    const others = Promise.all([rig.dk.getAccessToken('c1'), rig.dk.getAccessToken('c1')]);
    ac.abort();
    await rejectsWith(first, ErrorCodes.CANCELLED);
    const [a, b] = await others;
    assert.equal(a, b);
    assert.equal((await rig.emu.rpc('users/get_current_account', undefined, a)).status, 200);
    assert.equal(await rig.tokenCalls(), 1);
  });

  test('invalid_grant marks needs_reauth; later calls fail fast without the network', async () => {
    const a = await rig.appWithAccount({ name: 'rv' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'gone', app: 'rv', refreshToken: g.refresh_token! });
    const t = await rig.dk.getAccessToken('gone');
    // Revoking an access token minted from a refresh token disables the refresh token too (Dropbox docs: auth/token/revoke).
    assert.equal((await rig.emu.rpc('auth/token/revoke', undefined, t)).status, 200);
    await rig.advance(4 * 3600);
    const err = await rejectsWith(rig.dk.getAccessToken('gone'), ErrorCodes.REAUTH_REQUIRED);
    assert.equal(adviceLines(err).at(-1), 'Run: dropkey login --connection gone --app rv');
    const info = await rig.dk.get('gone');
    assert.equal(info.state, 'needs_reauth');
    assert.match(info.lastError ?? '', /refresh token/);
    assert.equal((await rig.stored('gone'))?.refreshToken, g.refresh_token, 'the refresh token is never lost');
    await rig.emu.control.clearRequests();
    await rejectsWith(rig.dk.getAccessToken('gone'), ErrorCodes.REAUTH_REQUIRED, /dropkey login --connection gone --app rv/);
    assert.equal((await rig.emu.control.requests()).length, 0, 'no request at all');
  });

  test('wrong app secret → INVALID_CLIENT with the fix; the refresh token is kept', async () => {
    const a = await rig.appWithAccount({ name: 'wrongsecret' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'ws', app: 'wrongsecret', refreshToken: g.refresh_token! });
    const right = (await rig.dk.store.getApp('wrongsecret'))!.secret!;
    await rig.dk.updateApp('wrongsecret', { secret: 'notthesecret0' });
    await rig.advance(4 * 3600);
    await rejectsWith(rig.dk.getAccessToken('ws'), ErrorCodes.INVALID_CLIENT, /dropkey app update --name wrongsecret --secret -/);
    assert.equal((await rig.stored('ws'))?.refreshToken, g.refresh_token);
    assert.equal((await rig.stored('ws'))?.state, 'active');
    // Correcting the secret fixes the connection at once: nothing else was lost.
    await rig.dk.updateApp('wrongsecret', { secret: right });
    const t = await rig.dk.getAccessToken('ws');
    assert.equal((await rig.emu.rpc('users/get_current_account', undefined, t)).status, 200);
    assert.equal((await rig.dk.get('ws')).lastError, null);
  });

  test('a pasted access token: accepted with a warning, never refreshed, then TOKEN_EXPIRED with the upgrade', async () => {
    const a = await rig.appWithAccount({ name: 'pasted' });
    const g = await a.grant(undefined, 'online');
    const r = await rig.dk.import({ connection: 'p', app: 'pasted', accessToken: ` "${g.access_token}" ` });
    assert.equal(r.refreshable, false);
    // The upgrade is a fix: the CLI prints it as the command to run.
    assert.ok(r.warnings.some((w) => /renews itself/.test(w)), r.warnings.join('\n'));
    assert.equal(r.fix && fixCommand(r.fix), 'dropkey login --connection p --app pasted');
    assert.ok(r.warnings.some((w) => /4 hours/.test(w)));
    assert.equal(r.connection.email, a.email);
    assert.equal(await rig.dk.getAccessToken('p'), g.access_token);
    await rig.advance(4 * 3600 + 1);
    const err = await rejectsWith(rig.dk.getAccessToken('p'), ErrorCodes.TOKEN_EXPIRED);
    assert.match(adviceText(err), /dropkey login --connection p --app pasted/);
    // It cannot replace a renewable connection: that would lose the refresh token.
    const g2 = await a.grant(undefined, 'online');
    await rejectsWith(rig.dk.import({ connection: 'c1', app: 'pasted', accessToken: g2.access_token }), ErrorCodes.ALREADY_EXISTS);
    assert.ok((await rig.stored('c1'))?.refreshToken);
  });

  test('bad credentials to import are refused clearly and nothing is stored', async () => {
    const a = await rig.appWithAccount({ name: 'badimp' });
    const g = await a.grant();
    await rejectsWith(rig.dk.import({ connection: 'x1', app: 'badimp', refreshToken: g.access_token }), ErrorCodes.BAD_INPUT, /access token/);
    await rejectsWith(rig.dk.import({ connection: 'x1', app: 'badimp', refreshToken: 'A'.repeat(64) }), ErrorCodes.BAD_INPUT, /does not accept this refresh token/);
    await rejectsWith(rig.dk.import({ connection: 'x1', app: 'badimp', accessToken: `sl.${'B'.repeat(140)}` }), ErrorCodes.BAD_INPUT, /doctor/);
    await rejectsWith(rig.dk.import({ connection: 'x1', app: 'badimp', accessToken: 'two words' }), ErrorCodes.BAD_INPUT);
    await rejectsWith(rig.dk.import({ connection: 'x1', app: 'badimp' }), ErrorCodes.BAD_INPUT);
    await rejectsWith(rig.dk.get('x1'), ErrorCodes.NOT_FOUND);
  });

  test('what is pasted along with a token ("Bearer ", NAME=, a token JSON) is stripped; a refresh token given as an access token is named', async () => {
    const a = await rig.appWithAccount({ name: 'pastes' });
    const g = await a.grant();
    const r1 = await rig.dk.import({ connection: 'paste1', app: 'pastes', accessToken: `Bearer ${g.access_token}\n` });
    assert.equal(await rig.dk.getAccessToken('paste1'), g.access_token);
    assert.equal(r1.connection.email, a.email);
    await rig.dk.import({ connection: 'paste2', app: 'pastes', refreshToken: `DROPBOX_REFRESH_TOKEN="${g.refresh_token}"` });
    assert.equal((await rig.stored('paste2'))?.refreshToken, g.refresh_token);
    await rig.dk.import({ connection: 'paste3', app: 'pastes', refreshToken: JSON.stringify(g) });
    assert.equal((await rig.stored('paste3'))?.refreshToken, g.refresh_token);
    assert.equal(g.refresh_token?.length, 64, 'the emulator mints refresh tokens shaped like Dropbox\'s');
    const err = await rejectsWith(rig.dk.import({ connection: 'paste4', app: 'pastes', accessToken: g.refresh_token! }), ErrorCodes.BAD_INPUT, /most likely a refresh token/);
    assert.match(adviceText(err), /dropkey import --connection paste4 --app pastes --refresh-token -/);
    assert.ok(!`${err.message}${err.hint}`.includes(g.refresh_token!));
    await rejectsWith(rig.dk.get('paste4'), ErrorCodes.NOT_FOUND);
  });

  test('team app: validated with team/get_info', async () => {
    const a = await rig.appWithAccount({ name: 'teamapp', team: true });
    const g = await a.grant();
    const r = await rig.dk.import({ connection: 'team', app: 'teamapp', refreshToken: g.refresh_token! });
    assert.ok(r.connection.teamName?.startsWith('Team '), JSON.stringify(r.connection));
    assert.ok(r.connection.teamId);
    assert.deepEqual([...r.connection.scopes].sort(), ['members.read', 'sessions.list', 'team_info.read']);
  });

  test('team connections: revoked acting as a member when team_data.member allows it, else explained', async () => {
    const a = await rig.appWithAccount({ name: 'teamrev', team: true, scopes: ['team_info.read', 'members.read', 'team_data.member'] });
    const g = await a.grant();
    await rig.dk.import({ connection: 'teamrev', app: 'teamrev', refreshToken: g.refresh_token! });
    const t = await rig.dk.getAccessToken('teamrev');
    const res = await rig.dk.revoke('teamrev');
    assert.equal(res.revokedAtDropbox, true);
    assert.equal((await rig.emu.rpc('team/get_info', undefined, t)).status, 401);

    const b = await rig.appWithAccount({ name: 'teamnorev', team: true });
    await rig.dk.import({ connection: 'teamnorev', app: 'teamnorev', refreshToken: (await b.grant()).refresh_token! });
    await rejectsWith(rig.dk.revoke('teamnorev'), ErrorCodes.BAD_INPUT, /Admin console.*dropkey revoke --connection teamnorev --force/s);
    assert.equal((await rig.dk.get('teamnorev')).state, 'active', 'kept');
    const forced = await rig.dk.revoke('teamnorev', { force: true });
    assert.equal(forced.revokedAtDropbox, false);
    await rejectsWith(rig.dk.get('teamnorev'), ErrorCodes.NOT_FOUND);
  });

  test('list() and get() carry no secrets', async () => {
    const all = await rig.dk.list();
    assert.ok(all.length >= 3);
    const text = JSON.stringify(all);
    for (const name of ['c1', 'team']) {
      const s = (await rig.stored(name))!;
      assert.ok(!text.includes(s.refreshToken!));
      assert.ok(!text.includes(s.accessToken!));
    }
  });

  test('revoke: at Dropbox, then locally; an already-dead token is still deleted locally', async () => {
    const a = await rig.appWithAccount({ name: 'rev' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'r1', app: 'rev', refreshToken: g.refresh_token! });
    const t = await rig.dk.getAccessToken('r1');
    const res = await rig.dk.revoke('r1');
    assert.equal(res.revokedAtDropbox, true);
    await rejectsWith(rig.dk.get('r1'), ErrorCodes.NOT_FOUND);
    assert.equal((await rig.emu.rpc('users/get_current_account', undefined, t)).status, 401);

    const g2 = await a.grant();
    await rig.dk.import({ connection: 'r2', app: 'rev', refreshToken: g2.refresh_token! });
    const t2 = await rig.dk.getAccessToken('r2');
    await rig.emu.rpc('auth/token/revoke', undefined, t2);
    const res2 = await rig.dk.revoke('r2');
    assert.equal(res2.revokedAtDropbox, false);
    assert.match(res2.message, /already/);
    await rejectsWith(rig.dk.get('r2'), ErrorCodes.NOT_FOUND);
  });
});

describe('revoke when Dropbox disagrees', () => {
  let rig: Rig;
  before(async () => {
    rig = await makeRig();
  });
  after(() => rig.close());

  test('a token Dropbox calls expired (while it looks valid here) is refreshed once and the revoke goes through', async () => {
    const a = await rig.appWithAccount({ name: 'exp' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'x1', app: 'exp', refreshToken: g.refresh_token! });
    await rig.dk.getAccessToken('x1');
    // Only Dropbox's clock moves: the stored expiry still looks fine to dropkey.
    await rig.emu.control.advanceClock(4 * 3600 + 60);
    await rig.emu.control.clearRequests();
    const res = await rig.dk.revoke('x1');
    assert.equal(res.revokedAtDropbox, true, res.message);
    assert.match(res.message, /Revoked "x1" at Dropbox/);
    const revokes = (await rig.emu.control.requests()).filter((r) => r.path === '/2/auth/token/revoke');
    assert.deepEqual(revokes.map((r) => r.status), [401, 200], 'one refused attempt, one after the refresh');
    // The refresh token is dead at Dropbox now: importing it again is refused.
    await assert.rejects(rig.dk.import({ connection: 'x1again', app: 'exp', refreshToken: g.refresh_token! }), /revoked|no longer accepts|invalid/i);
  });

  test('--force says plainly that the refresh token stays valid at Dropbox', async () => {
    const a = await rig.appWithAccount({ name: 'frc' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'f1', app: 'frc', refreshToken: g.refresh_token! });
    await rig.dk.getAccessToken('f1');
    await rig.emu.control.fault({ route: 'auth/token/revoke', status: 503, count: 20 });
    try {
      const kept = await rejectsWith(rig.dk.revoke('f1'), ErrorCodes.DROPBOX_UNAVAILABLE, /kept/);
      assert.match(adviceText(kept), /--force/);
      const res = await rig.dk.revoke('f1', { force: true });
      assert.equal(res.revokedAtDropbox, false);
      assert.match(res.message, /refresh token stays valid at Dropbox/);
      assert.match(res.message, /connected_apps/);
      await rejectsWith(rig.dk.get('f1'), ErrorCodes.NOT_FOUND);
    } finally {
      await rig.emu.control.clearFaults();
    }
  });
});

describe('an app whose secret was forgotten after connecting with it', () => {
  let rig: Rig;
  before(async () => {
    rig = await makeRig();
  });
  after(() => rig.close());

  test('refresh says the connection was authorized with the secret and how to fix it, not "a dropkey bug"', async () => {
    const a = await rig.appWithAccount({ name: 'nosec' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'n1', app: 'nosec', refreshToken: g.refresh_token! });
    await rig.dk.updateApp('nosec', { secret: null });
    const err = await rejectsWith(rig.dk.refresh('n1', { force: true }), ErrorCodes.INVALID_CLIENT);
    const text = `${err.message}\n${err.hint ?? ''}`;
    assert.doesNotMatch(text, /dropkey bug/);
    assert.match(text, /app "nosec" has no secret/);
    assert.match(err.fix ? fixCommand(err.fix) : '', /dropkey app update --name nosec --secret -/);
    const report = await rig.dk.doctor({ connection: 'n1' });
    const finding = report.findings.find((f) => f.id === 'app_secret_missing');
    assert.ok(finding, JSON.stringify(report.findings));
    assert.match(finding.fix ? fixCommand(finding.fix) : '', /dropkey app update --name nosec --secret -/);
  });
});

describe('refresh failure vs a reconnect that lands meanwhile', () => {
  // A refresh whose lock lease lapsed (a stalled process) can meet a login that wrote the row meanwhile. Its own
  // invalid_grant says nothing about the new credentials: the row must stay as the login wrote it.
  let rig: Rig;
  let beforeToken: (() => Promise<void>) | undefined;
  before(async () => {
    rig = await makeRig({
      dropkey: {
        fetch: (async (url: string, init?: RequestInit) => {
          const hook = String(url).endsWith('/oauth2/token') ? beforeToken : undefined;
          if (hook) {
            beforeToken = undefined;
            await hook();
          }
          return rig.emu.fetch(url, init);
        }) as typeof fetch,
      },
    });
  });
  after(() => rig.close());

  test('invalid_grant for the old refresh token leaves the reconnected row active, and serves its token', async () => {
    const a = await rig.appWithAccount({ name: 'relog' });
    const g1 = await a.grant();
    await rig.dk.import({ connection: 'relog', app: 'relog', refreshToken: g1.refresh_token! });
    // The old grant dies (revoking a token minted from it disables its refresh token, Dropbox docs: auth/token/revoke); its token expires.
    assert.equal((await rig.emu.rpc('auth/token/revoke', undefined, await rig.dk.getAccessToken('relog'))).status, 200);
    await rig.advance(4 * 3600);
    const g2 = await a.grant();
    beforeToken = async () => {
      // The "new login", written by another handle while our refresh request is on its way.
      const { openStore } = await import('../store/index.js');
      const other = await openStore({ home: rig.home, masterKey: rig.masterKey });
      try {
        await other.updateConnection('relog', {
          refreshToken: g2.refresh_token!,
          accessToken: g2.access_token,
          accessTokenExpiresAt: rig.clock.now + 4 * 3600_000,
          state: 'active',
          lastError: null,
        });
      } finally {
        await other.close();
      }
    };
    assert.equal(await rig.dk.getAccessToken('relog'), g2.access_token);
    assert.equal(beforeToken, undefined, 'the refresh did reach the token endpoint');
    const stored = await rig.stored('relog');
    assert.equal(stored?.state, 'active');
    assert.equal(stored?.refreshToken, g2.refresh_token);
    assert.equal((await rig.dk.get('relog')).state, 'active');
  });
});

describe('client()', () => {
  let rig: Rig;
  before(async () => {
    rig = await makeRig();
  });
  after(() => rig.close());

  test('calls Dropbox with a fresh token, and refreshes once on 401 expired_access_token', async () => {
    const a = await rig.appWithAccount({ name: 'cl' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'cl', app: 'cl', refreshToken: g.refresh_token! });
    const client = rig.dk.client('cl');
    const me = await client.rpc<{ email: string }>('users/get_current_account');
    assert.equal(me.email, a.email);
    // Only Dropbox's clock moves: locally the token still looks fresh, Dropbox says it expired.
    await rig.emu.control.advanceClock(4 * 3600 + 5);
    await rig.emu.control.clearRequests();
    const results = await Promise.all(Array.from({ length: 5 }, () => client.rpc<{ email: string }>('users/get_current_account')));
    assert.ok(results.every((r) => r.email === a.email));
    assert.equal(await rig.tokenCalls(), 1, 'concurrent 401s share one refresh');
  });
  test('checkAccess: Dropbox accepts the connection; a given token is checked as is, without a refresh', async () => {
    const a = await rig.appWithAccount({ name: 'chk' });
    const g = await a.grant();
    await rig.dk.import({ connection: 'chk', app: 'chk', refreshToken: g.refresh_token! });
    await rig.dk.checkAccess('chk');
    const old = await rig.dk.getAccessToken('chk');
    await rig.emu.rpc('auth/token/revoke', undefined, old);
    await rig.emu.control.clearRequests();
    await assert.rejects(rig.dk.checkAccess('chk', { team: false, accessToken: old }), (e: unknown) => errorTag(e) === 'invalid_access_token');
    assert.equal(await rig.tokenCalls(), 0, 'no refresh behind the caller\'s back');
    await rejectsWith(rig.dk.checkAccess('nobody'), ErrorCodes.NOT_FOUND);
  });

  test('refreshMarginSeconds is the option, 300 by default', () => {
    assert.equal(rig.dk.refreshMarginSeconds, 300);
  });
});
