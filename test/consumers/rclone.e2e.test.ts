/**
 * rclone (Debian's package) reads only the agent's `rclone` output: after a simulated 5 hours it lists,
 * downloads and uploads with the token the built `dropkey agent` wrote into an existing rclone.conf, which holds no refresh token and
 * no secret. rclone's Dropbox backend only speaks https to api/content.dropboxapi.com (no option changes the API
 * hosts), so it goes through HTTPS_PROXY to a TLS front for the emulator (test/helpers/tls-front.ts), trusting
 * its CA with --ca-cert.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ini from 'ini';
import { renderRclone } from '../../src/agent/outputs/rclone.js';
import { CliEnv } from '../cli/cli-helpers.js';
import { opensslAvailable, startTlsFront } from '../helpers/tls-front.js';
import { snapshotOf, upload } from './consumer-helpers.js';

const RCLONE = ['/usr/bin/rclone', '/usr/local/bin/rclone'].find((p) => existsSync(p));
const skip = !RCLONE ? 'rclone is not installed (Debian package "rclone"; .ci/run installs it)' : !opensslAvailable() ? 'openssl is not installed (needed for the TLS front rclone talks to)' : false;

const OTHER = `# my remotes
[s3]
type = s3
provider = AWS
env_auth = true

[crypt]
type = crypt
remote = s3:bucket/enc
; keep this comment
`;

test('rclone lists and copies with only the rclone output, after 5 simulated hours', { skip, timeout: 120_000 }, async () => {
  const t = await CliEnv.create();
  after(() => t.close());
  const front = await startTlsFront(t.emu.url);
  after(() => front.close());
  const { app, token: g } = await t.connect('rc');
  const first = await snapshotOf(t, 'rc', app.key);
  await upload(t.emu.url, first.accessToken, '/backups/2026-01-01.txt', 'first backup\n');
  await upload(t.emu.url, first.accessToken, '/backups/2026-01-02.txt', 'second backup\n');

  const dir = join(t.home, 'rclone-run');
  mkdirSync(join(dir, 'out'), { recursive: true });
  const conf = join(dir, 'rclone.conf');
  const rclone = (...args: string[]) =>
    promisify(execFile)(RCLONE!, ['--config', conf, '--ca-cert', front.caFile, '--retries', '1', '--low-level-retries', '1', ...args], {
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, HTTPS_PROXY: front.proxyUrl, NO_PROXY: '' },
    });

  // The built agent writes the rclone output into the user's existing rclone.conf (the same command each time:
  // `--once`, as cron would run it; its clock follows the emulator's).
  const agentOnce = async (): Promise<void> => {
    const r = await t.run(['agent', '--once', '--connection', 'rc', '--output', `rclone:${conf}`, '--remote', 'dropbox']);
    assert.equal(r.code, 0, r.stderr);
  };
  writeFileSync(conf, OTHER, { mode: 0o600 });
  await agentOnce();
  assert.equal(JSON.parse(ini.parse(readFileSync(conf, 'utf8'))['dropbox'].token).access_token, first.accessToken, 'the agent wrote the current token');
  // The first token, written at the start, stops working once the clocks are 5 hours on.
  await t.advanceClock(5 * 3600);
  await assert.rejects(rclone('lsf', 'dropbox:backups'), (e: { stderr: string }) => /expired|refresh token is not set|401/i.test(e.stderr));

  // What the agent writes next: dropkey refreshes (its clock moved too) and the remote's token is replaced.
  await agentOnce();
  const fresh = await snapshotOf(t, 'rc', app.key);
  assert.notEqual(fresh.accessToken, first.accessToken);
  const written = readFileSync(conf, 'utf8');
  assert.equal(JSON.parse(ini.parse(written)['dropbox'].token).access_token, fresh.accessToken, 'the agent wrote the refreshed token');
  assert.equal(statSync(conf).mode & 0o777, 0o600, 'the file kept its mode');
  assert.ok(written.startsWith(OTHER), 'the other remotes and comments are untouched');
  assert.doesNotMatch(written, /refresh_token|client_secret/);
  assert.ok(!written.includes(g.refresh_token!) && !written.includes(app.secret!), 'no refresh token or app secret in the file');

  const listed = await rclone('lsf', 'dropbox:backups');
  assert.deepEqual(listed.stdout.trim().split('\n').sort(), ['2026-01-01.txt', '2026-01-02.txt']);
  await rclone('copy', 'dropbox:backups/2026-01-02.txt', join(dir, 'out'));
  assert.equal(readFileSync(join(dir, 'out', '2026-01-02.txt'), 'utf8'), 'second backup\n');
  writeFileSync(join(dir, 'out', 'new.txt'), 'from rclone\n');
  await rclone('copy', join(dir, 'out', 'new.txt'), 'dropbox:uploads');
  const back = await fetch(`${t.emu.url}/2/files/download`, {
    method: 'POST',
    headers: { authorization: `Bearer ${fresh.accessToken}`, 'dropbox-api-arg': JSON.stringify({ path: '/uploads/new.txt' }) },
  });
  assert.equal(await back.text(), 'from rclone\n');
  assert.equal(readFileSync(conf, 'utf8'), written, 'rclone did not need to refresh (it would rewrite the token)');
  assert.ok(!front.seen.some((s) => /oauth2\/token/.test(s)), 'rclone never called the token endpoint with a valid token');
  assert.ok(front.seen.some((s) => s.startsWith('api.dropboxapi.com ')) && front.seen.some((s) => s.startsWith('content.dropboxapi.com ')));
});

test('rclone with includeRefreshToken (a long-lived mount) refreshes by itself once the token expires', { skip, timeout: 120_000 }, async () => {
  const t = await CliEnv.create();
  after(() => t.close());
  const front = await startTlsFront(t.emu.url);
  after(() => front.close());
  const { app, token: g } = await t.connect('mount');
  const snap = { ...(await snapshotOf(t, 'mount', app.key)), longLived: { refreshToken: g.refresh_token!, appSecret: app.secret! } };
  await upload(t.emu.url, snap.accessToken, '/m/a.txt', 'a\n');
  const dir = join(t.home, 'rclone-mount');
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'rclone.conf');
  writeFileSync(conf, renderRclone(OTHER, snap, { remote: 'dropbox', includeRefreshToken: true }), { mode: 0o600 });
  await t.advanceClock(5 * 3600);
  // rclone uses the real clock, so the expiry it reads is moved back to make the token look expired to it too.
  writeFileSync(conf, readFileSync(conf, 'utf8').replace(/"expiry":"[^"]+"/, '"expiry":"2000-01-01T00:00:00Z"'));
  const r = await promisify(execFile)(RCLONE!, ['--config', conf, '--ca-cert', front.caFile, 'lsf', 'dropbox:m'], {
    env: { PATH: process.env['PATH'] ?? '', HOME: dir, HTTPS_PROXY: front.proxyUrl, NO_PROXY: '' },
  });
  assert.equal(r.stdout.trim(), 'a.txt');
  assert.ok(front.seen.some((s) => /^api\.dropboxapi\.com \/(1\/)?oauth2\/token$/.test(s)), `rclone refreshed through the token endpoint: ${front.seen.join(', ')}`);
  const after5h = JSON.parse(/^token = (.*)$/m.exec(readFileSync(conf, 'utf8'))![1]!);
  assert.notEqual(after5h.access_token, snap.accessToken, 'rclone saved the token it refreshed');
  // rclone saves the refreshed token by rewriting the file itself (it drops blank lines, keeps the rest).
  const parsed = ini.parse(readFileSync(conf, 'utf8'));
  const others = ini.parse(OTHER);
  assert.deepEqual({ s3: { ...parsed['s3'] }, crypt: { ...parsed['crypt'] } }, { s3: { ...others['s3'] }, crypt: { ...others['crypt'] } });
});
