/**
 * The official Python SDK (Debian's python3-dropbox, run with /usr/bin/python3) reading the agent's `token`
 * output format, a bare access token in a file, after a simulated 5 hours (issue 9). The SDK takes other hosts
 * through DROPBOX_API_HOST / DROPBOX_API_CONTENT_HOST but always speaks https, so it talks to a TLS front for the
 * emulator (test/helpers/tls-front.ts) and trusts its CA (ca_certs, and REQUESTS_CA_BUNDLE for requests).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CliEnv } from '../cli/cli-helpers.js';
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

  // The `token` output: the bare token, no newline.
  writeFileSync(tokenFile, (await snapshotOf(t, 'py', app.key)).accessToken, { mode: 0o600 });
  const before = await python();
  assert.equal(before.code, 0, JSON.stringify(before.out));
  assert.equal(before.out.account_id, accountId);

  await t.advanceClock(5 * 3600);
  const stale = await python();
  assert.equal(stale.code, 3, 'the token written 5 hours ago has expired');
  assert.match(stale.out.error, /expired_access_token/);

  writeFileSync(tokenFile, (await snapshotOf(t, 'py', app.key)).accessToken);
  const after5h = await python();
  assert.equal(after5h.code, 0, JSON.stringify(after5h.out));
  assert.deepEqual(after5h.out, { account_id: accountId, content: 'written by the Python SDK' });
  assert.ok(front.seen.some((s) => s.startsWith(`${front.hostPort} /2/files/download`)));
});
