/**
 * The official Python SDK (Debian's python3-dropbox, run with /usr/bin/python3) reading the agent's `token`
 * output (a bare access token in a file, written by the built `dropkey agent --once`), after a simulated 5 hours. The SDK takes other hosts
 * through DROPBOX_API_HOST / DROPBOX_API_CONTENT_HOST but always speaks https, so it talks to a TLS front for the
 * emulator (test/helpers/tls-front.ts) and trusts its CA (ca_certs, and REQUESTS_CA_BUNDLE for requests).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CliEnv } from '../cli/cli-helpers.js';
import { bind } from '../../src/server/node.js';
import { makeServerRig } from '../server/rig.js';
import { opensslAvailable, startTlsFront } from '../helpers/tls-front.js';
import { snapshotOf } from './consumer-helpers.js';

// Debian's interpreter, where python3-dropbox is installed (a python3 earlier on PATH may be another one).
const PYTHON = '/usr/bin/python3';
function sdkMissing(): string | false {
  try {
    execFileSync(PYTHON, ['-c', 'import dropbox'], { stdio: 'ignore', env: { PATH: '/usr/bin:/bin' } });
    return opensslAvailable() ? false : 'openssl is not installed (needed for the TLS front the SDK talks to)';
  } catch {
    return `the Python SDK is not installed for ${PYTHON} (Debian package "python3-dropbox"; .ci/run installs it)`;
  }
}

// Reads the token file at each call, as a long-running script should, and reports what Dropbox said.
const SCRIPT = `
import json, os, sys
import dropbox
from dropbox.exceptions import AuthError
token = open(os.environ["DROPBOX_ACCESS_TOKEN_FILE"]).read().strip()
dbx = dropbox.Dropbox(oauth2_access_token=token, ca_certs=os.environ["CA_FILE"])
try:
    account = dbx.users_get_current_account()
except AuthError as e:
    print(json.dumps({"error": str(e.error)}))
    sys.exit(3)
dbx.files_upload(b"written by the Python SDK", "/py/hello.txt", mode=dropbox.files.WriteMode.overwrite)
_, res = dbx.files_download("/py/hello.txt")
print(json.dumps({"account_id": account.account_id, "content": res.content.decode()}))
`;

test('the Python SDK works from the token file after 5 simulated hours', { skip: sdkMissing(), timeout: 120_000 }, async () => {
  const t = await CliEnv.create();
  after(() => t.close());
  const front = await startTlsFront(t.emu.url);
  after(() => front.close());
  const { app, accountId } = await t.connect('py');
  const tokenFile = join(t.home, 'dropbox-token');
  const script = join(t.home, 'job.py');
  writeFileSync(script, SCRIPT);
  const python = () =>
    promisify(execFile)(PYTHON, [script], {
      env: {
        PATH: '/usr/bin:/bin',
        HOME: t.home,
        DROPBOX_ACCESS_TOKEN_FILE: tokenFile,
        CA_FILE: front.caFile,
        // requests replaces the SDK's ca_certs with its own bundle when verifying; this is the setting it reads.
        REQUESTS_CA_BUNDLE: front.caFile,
        DROPBOX_API_HOST: front.hostPort,
        DROPBOX_API_CONTENT_HOST: front.hostPort,
        DROPBOX_API_NOTIFY_HOST: front.hostPort,
      },
    }).then(
      (r) => ({ code: 0, out: JSON.parse(r.stdout) }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout ? JSON.parse(e.stdout) : { stderr: e.stderr } }),
    );

  // The `token` output, written by the built agent (`--once`, its clock following the emulator's).
  const agentOnce = async (): Promise<void> => {
    const r = await t.run(['agent', '--once', '--connection', 'py', '--output', `token:${tokenFile}`]);
    assert.equal(r.code, 0, r.stderr);
  };
  await agentOnce();
  assert.equal(readFileSync(tokenFile, 'utf8'), `${(await snapshotOf(t, 'py', app.key)).accessToken}\n`, 'the token output: the token and a newline');
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
  const before = await python();
  assert.equal(before.code, 0, JSON.stringify(before.out));
  assert.equal(before.out.account_id, accountId);

  await t.advanceClock(5 * 3600);
  const stale = await python();
  assert.equal(stale.code, 3, 'the token written 5 hours ago has expired');
  assert.match(stale.out.error, /expired_access_token/);

  await agentOnce();
  const renewed = readFileSync(tokenFile, 'utf8').trim();
  assert.equal(renewed, (await snapshotOf(t, 'py', app.key)).accessToken, 'the agent wrote the refreshed token');
  const after5h = await python();
  assert.equal(after5h.code, 0, JSON.stringify(after5h.out));
  assert.deepEqual(after5h.out, { account_id: accountId, content: 'written by the Python SDK' });
  assert.ok(front.seen.some((s) => s.startsWith(`${front.hostPort} /2/files/download`)));
});

test('the Python SDK through dropkey serve\'s proxy: an API key as token, the proxy in its host variables', { skip: sdkMissing(), timeout: 120_000 }, async () => {
  const rig = await makeServerRig();
  after(() => rig.close());
  const { accountId } = await rig.connection('py');
  const key = await rig.key(['proxy'], ['py'], 'python-worker');
  const listener = await bind(0, '127.0.0.1');
  listener.setApp(rig.app);
  after(() => listener.close(0));
  // The SDK only speaks https; in production dropkey serve sits behind the TLS proxy that serves its public URL.
  const front = await startTlsFront(`http://127.0.0.1:${listener.port}`);
  after(() => front.close());
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-py-proxy-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'api-key');
  writeFileSync(tokenFile, `${key}\n`, { mode: 0o600 });
  const script = join(dir, 'job.py');
  writeFileSync(script, SCRIPT);
  // The SDK builds https://{HOST}/2/{route}: a host with a path sends every call to /proxy/{connection}/2/{route}.
  const host = `${front.hostPort}/proxy/py`;
  const env = {
    PATH: '/usr/bin:/bin',
    HOME: dir,
    DROPBOX_ACCESS_TOKEN_FILE: tokenFile,
    CA_FILE: front.caFile,
    REQUESTS_CA_BUNDLE: front.caFile,
    DROPBOX_API_HOST: host,
    DROPBOX_API_CONTENT_HOST: host,
    DROPBOX_API_NOTIFY_HOST: host,
  };
  const r = await promisify(execFile)(PYTHON, [script], { env });
  assert.deepEqual(JSON.parse(r.stdout), { account_id: accountId, content: 'written by the Python SDK' });
  assert.ok(front.seen.includes(`${front.hostPort} /proxy/py/2/files/download`));
  // Hours later the same API key still works: the server refreshes behind the proxy.
  await rig.advance(5 * 3600);
  const later = await promisify(execFile)(PYTHON, [script], { env });
  assert.equal(JSON.parse(later.stdout).account_id, accountId);
});
