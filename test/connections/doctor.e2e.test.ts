/**
 * The diagnosis engine against a listening emulator (real HTTP, so responses carry a Date header for the
 * clock-skew check): each problem from docs/connecting-an-app.md ("When something goes wrong") gives a finding with its fix; a healthy setup gives none.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DoctorReport } from '../../src/connections/doctor.js';
import { adviceText } from '../../src/cli/fix.js';
import { makeRig, type Rig } from './setup.js';

let rig: Rig;
before(async () => {
  rig = await makeRig({ listen: true, dropkey: { fetch: globalThis.fetch } });
});
after(() => rig.close());

function ids(r: DoctorReport): string[] {
  return r.findings.map((f) => f.id);
}

/** The finding with its advice as the CLI renders it (`fix`: the hint, then the command to run). */
function finding(r: DoctorReport, id: string) {
  const found = r.findings.find((x) => x.id === id);
  assert.ok(found, `expected finding ${id}, got ${JSON.stringify(r.findings, null, 1)}`);
  const f = { ...found, fix: adviceText(found) };
  assert.ok(f.message.length > 20 && f.fix.length > 10);
  assert.ok(!/\bdropkey (login|import|app|doctor|token|list)\b/.test(found.hint), `the hint is words, not a command: ${found.hint}`);
  return f;
}

describe('stored connections', () => {
  test('healthy: no findings, scopes needed are granted', async () => {
    const a = await rig.appWithAccount({ name: 'ok' });
    await rig.dk.import({ connection: 'ok', app: 'ok', refreshToken: (await a.grant()).refresh_token! });
    const r = await rig.dk.doctor({ connection: 'ok', need: ['files.content.read', 'files.metadata.read'] });
    assert.deepEqual(r.findings, []);
    assert.equal(r.healthy, true);
  });

  test('scopes missing for what the job needs, confirmed live', async () => {
    const a = await rig.appWithAccount({ name: 'narrow' });
    const g = await a.grant(['account_info.read']);
    await rig.dk.import({ connection: 'narrow', app: 'narrow', refreshToken: g.refresh_token! });
    const r = await rig.dk.doctor({ connection: 'narrow', need: ['files.metadata.read'] });
    assert.equal(r.healthy, false);
    const f = finding(r, 'missing_scope');
    assert.match(f.message, /files\.metadata\.read/);
    assert.match(f.fix, /dropkey login --connection narrow --app narrow --add-scope files\.metadata\.read/);
  });

  test('unknown granted scopes (app registered without scopes): confirmed live, files.content.* included', async () => {
    const a = await rig.appWithAccount({ name: 'ro', scopes: ['account_info.read', 'files.metadata.read'] });
    await rig.dk.store.updateApp('ro', { scopes: [] });
    await rig.dk.import({ connection: 'ro', app: 'ro', refreshToken: (await a.grant()).refresh_token! });
    assert.deepEqual((await rig.dk.get('ro')).scopes, [], 'Dropbox did not say');
    const r = await rig.dk.doctor({ connection: 'ro', need: ['files.content.write', 'files.content.read', 'files.metadata.read'] });
    assert.equal(r.healthy, false);
    const f = finding(r, 'missing_scope');
    assert.match(f.message, /files\.content\.write, files\.content\.read/);
    assert.doesNotMatch(f.message, /metadata/);
    const ok = await rig.dk.doctor({ connection: 'ok', need: ['files.content.write', 'files.content.read'] });
    assert.equal(ok.healthy, true, JSON.stringify(ok.findings));
  });

  test('scopes unknown after a refresh-token import: files.content.write is confirmed by a harmless upload session', async () => {
    // The app is registered without scopes, so the import's refresh answer lists none (Dropbox docs: oauth2/token) and nothing is recorded.
    const a = await rig.appWithAccount({ name: 'wr' });
    await rig.dk.store.updateApp('wr', { scopes: [] });
    await rig.dk.import({ connection: 'wr', app: 'wr', refreshToken: (await a.grant()).refresh_token! });
    assert.deepEqual((await rig.dk.get('wr')).scopes, [], 'Dropbox did not say');
    await rig.emu.control.clearRequests();
    const r = await rig.dk.doctor({ connection: 'wr', need: ['files/upload'] });
    assert.deepEqual(r.findings, [], 'granted: nothing missing, nothing left unverified');
    const probes = (await rig.emu.control.requests()).filter((q) => q.path.split('?')[0] === '/2/files/upload_session/start');
    assert.equal(probes.length, 1, 'one live check');
    assert.equal(probes[0]!.status, 200);
    // Harmless: the session holds no data, is never finished and expires; the account's files are unchanged.
    const token = await rig.dk.getAccessToken('wr');
    const listed = await rig.emu.rpc('files/list_folder', { path: '', recursive: true }, token);
    assert.equal(listed.status, 200);
    assert.deepEqual((listed.json as { entries: unknown[] }).entries, []);
  });

  test('needs_reauth after the refresh token was revoked', async () => {
    const a = await rig.appWithAccount({ name: 'gone' });
    await rig.dk.import({ connection: 'gone', app: 'gone', refreshToken: (await a.grant()).refresh_token! });
    await rig.emu.rpc('auth/token/revoke', undefined, await rig.dk.getAccessToken('gone'));
    const r = await rig.dk.doctor({ connection: 'gone' });
    assert.equal(r.healthy, false);
    assert.match(finding(r, 'needs_reauth').fix, /dropkey login --connection gone --app gone/);
    // And the state sticks: a second doctor run says the same without calling Dropbox.
    const r2 = await rig.dk.doctor({ connection: 'gone' });
    assert.ok(ids(r2).includes('needs_reauth'));
  });

  test('wrong app key or secret: invalid_client', async () => {
    const a = await rig.appWithAccount({ name: 'badsecret' });
    await rig.dk.import({ connection: 'bs', app: 'badsecret', refreshToken: (await a.grant()).refresh_token! });
    await rig.dk.store.updateApp('badsecret', { secret: 'wrongwrong12' });
    const r = await rig.dk.doctor({ connection: 'bs' });
    assert.equal(r.healthy, false);
    assert.match(finding(r, 'invalid_client').fix, /dropkey app update --name badsecret --secret -/);
  });

  test('no refresh token, then expired', async () => {
    const a = await rig.appWithAccount({ name: 'pasted' });
    await rig.dk.import({ connection: 'pasted', app: 'pasted', accessToken: (await a.grant(undefined, 'online')).access_token });
    const r = await rig.dk.doctor({ connection: 'pasted' });
    assert.equal(finding(r, 'no_refresh_token').severity, 'warning');
    assert.equal(r.healthy, true, 'still works for now');
    rig.clock.now += 4 * 3600_000 + 1000;
    try {
      const r2 = await rig.dk.doctor({ connection: 'pasted' });
      assert.equal(r2.healthy, false);
      assert.match(finding(r2, 'expired').fix, /dropkey login --connection pasted --app pasted/);
    } finally {
      rig.clock.now -= 4 * 3600_000 + 1000;
    }
  });

  test('app folder access is explained; redirect URI mismatch from lastError', async () => {
    const a = await rig.appWithAccount({ name: 'folder', access: 'app_folder' });
    await rig.dk.import({ connection: 'folder', app: 'folder', refreshToken: (await a.grant()).refresh_token! });
    await rig.dk.store.updateConnection('folder', { lastError: 'Dropbox refused the code because the redirect URI differs (redirect_uri mismatch)' });
    const r = await rig.dk.doctor({ connection: 'folder' });
    assert.equal(finding(r, 'app_folder_access').severity, 'info');
    assert.match(finding(r, 'redirect_uri_mismatch').fix, /Redirect URIs/);
  });

  test('clock skew against the Date header of Dropbox answers', async () => {
    rig.clock.now += 10 * 60_000;
    try {
      const r = await rig.dk.doctor({ connection: 'ok' });
      assert.match(finding(r, 'clock_skew').message, /ahead/);
    } finally {
      rig.clock.now -= 10 * 60_000;
    }
  });

  test('an unknown connection', async () => {
    const r = await rig.dk.doctor({ connection: 'nothere' });
    assert.equal(r.healthy, false);
    assert.match(finding(r, 'not_found').fix, /dropkey login --connection nothere/);
  });
});

describe('pasted tokens', () => {
  test('shape problems: whitespace, quotes, Bearer prefix, truncation, a refresh token', async () => {
    const a = await rig.appWithAccount({ name: 'shape' });
    const g = await a.grant();
    const quoted = await rig.dk.doctor({ token: ` "${g.access_token}"\n` });
    assert.ok(ids(quoted).includes('token.whitespace') && ids(quoted).includes('token.quotes'), ids(quoted).join());
    // Pasted along, they break the job that uses the value as given; the cleaned value is still checked live
    // (it works), so the paste problems are all that is reported.
    assert.equal(quoted.healthy, false);
    assert.deepEqual(quoted.findings.filter((f) => f.severity === 'error').map((f) => f.id).sort(), ['token.quotes', 'token.whitespace']);
    const bearer = await rig.dk.doctor({ token: `Bearer ${g.access_token}` });
    assert.ok(ids(bearer).includes('token.bearer_prefix'));
    const cut = await rig.dk.doctor({ token: g.access_token.slice(0, 30) });
    assert.ok(ids(cut).includes('token.truncated'));
    assert.equal(cut.healthy, false);
    const rt = await rig.dk.doctor({ token: g.refresh_token! });
    const f = finding(rt, 'token.refresh_as_access');
    assert.equal(f.severity, 'error', 'Dropbox refused it as a Bearer token');
    assert.match(f.fix, /dropkey import .*--refresh-token -/);
    assert.equal(rt.healthy, false);
  });

  test('a good pasted token: healthy, with the advice to connect for good', async () => {
    const a = await rig.appWithAccount({ name: 'good' });
    const g = await a.grant();
    const r = await rig.dk.doctor({ token: g.access_token, need: ['files.metadata.read', 'files/upload', 'sharing.read'] });
    assert.equal(r.healthy, true, JSON.stringify(r.findings));
    assert.match(finding(r, 'scopes_unverified').message, /, and sharing\.read could not be checked/, 'files/upload → files.content.write is probed live; sharing.read is not');
    const bad = await rig.dk.doctor({ token: g.access_token, need: ['no.such.scope'] });
    assert.ok(ids(bad).includes('unknown_need'));
    assert.equal(finding(r, 'pasted_short_lived_token').severity, 'warning');
  });

  test('expired and revoked pasted tokens', async () => {
    const a = await rig.appWithAccount({ name: 'old' });
    const g1 = await a.grant();
    const g2 = await a.grant();
    await rig.emu.rpc('auth/token/revoke', undefined, g2.access_token);
    const revoked = await rig.dk.doctor({ token: g2.access_token });
    assert.ok(ids(revoked).includes('revoked'));
    // Only Dropbox's clock moves, so the local clock stays in step with the Date header.
    await rig.emu.control.advanceClock(4 * 3600 + 1);
    const expired = await rig.dk.doctor({ token: g1.access_token });
    assert.equal(expired.healthy, false);
    assert.ok(ids(expired).includes('expired'), ids(expired).join());
  });

  test('a team token used on a user route without Select-User', async () => {
    const a = await rig.appWithAccount({ name: 'teamy', team: true });
    const g = await a.grant();
    const r = await rig.dk.doctor({ token: g.access_token, need: ['members.read'] });
    assert.match(finding(r, 'team_token').fix, /Dropbox-API-Select-User/);
    assert.equal(r.healthy, true, JSON.stringify(r.findings));
  });
});
