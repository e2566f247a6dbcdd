/**
 * The Python examples of the docs, run as written with the official SDK (Debian's python3-dropbox, /usr/bin/python3):
 *   - docs/emulator.md: its shell lines make the certificate, start `dropkey emulator` with it and get a token;
 *     its Python lines then reach the emulator. Its claim that the SDK's ca_certs alone is not enough is run too.
 *   - docs/proxy.md: its Python lines list a folder through dropkey serve's proxy (behind a TLS front, as dropkey
 *     serve sits behind a TLS proxy in production), with an API key as the SDK's token.
 * Only host names, ports and file paths are replaced; nothing else of the examples.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bind } from '../../src/server/node.js';
import { makeServerRig } from '../server/rig.js';
import { collect, MAIN, ROOT, waitForOutput } from '../cli/cli-helpers.js';
import { opensslAvailable, startTlsFront } from '../helpers/tls-front.js';

const PYTHON = '/usr/bin/python3';
function missing(...commands: string[]): string | false {
  try {
    execFileSync(PYTHON, ['-c', 'import dropbox'], { stdio: 'ignore', env: { PATH: '/usr/bin:/bin' } });
  } catch {
    return `the Python SDK is not installed for ${PYTHON} (Debian package "python3-dropbox")`;
  }
  if (!opensslAvailable()) return 'openssl is not installed (the examples serve https)';
  for (const c of commands) {
    try {
      execFileSync(c, ['--version'], { stdio: 'ignore' });
    } catch {
      return `${c} is not installed (the example uses it)`;
    }
  }
  return false;
}

/** The fenced blocks of `lang` in a doc, after the first line matching `after`. */
function blocks(doc: string, after: RegExp, lang: string): string[] {
  const text = readFileSync(join(ROOT, 'docs', doc), 'utf8');
  const start = text.search(after);
  assert.ok(start >= 0, `${doc}: ${after} not found`);
  return [...text.slice(start).matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}

const run = (args: string[], o: { cwd: string; env?: Record<string, string> }) =>
  promisify(execFile)(PYTHON, args, { cwd: o.cwd, env: { PATH: '/usr/bin:/bin', HOME: o.cwd, ...o.env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

test('docs/emulator.md: the Python SDK example reaches an emulator started as the doc says', { skip: missing('curl', 'jq'), timeout: 120_000 }, async () => {
  const [sh] = blocks('emulator.md', /\*\*The official Python SDK\*\*/, 'sh');
  const [py] = blocks('emulator.md', /\*\*The official Python SDK\*\*/, 'python');
  assert.ok(sh && py);
  const lines = sh.replace(/\\\n/g, ' ').split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const [openssl, emulator, token] = lines;
  assert.match(openssl!, /^openssl req /);
  assert.match(emulator!, /^dropkey emulator --port 8443 --tls-cert cert\.pem --tls-key key\.pem$/);
  assert.match(token!, /^export DROPBOX_ACCESS_TOKEN=\$\(curl .*\)$/);
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-py-emulator-doc-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('/bin/sh', ['-c', openssl!], { cwd: dir, stdio: 'ignore' });

  // Port 0 for the doc's 8443 (tests never take a fixed port); the rest as written.
  const child = spawn(process.execPath, [MAIN, ...emulator!.split(' ').slice(1).map((a) => (a === '8443' ? '0' : a))], {
    cwd: dir,
    env: { PATH: process.env['PATH'] ?? '' },
    stdio: 'pipe',
  });
  child.stdin.end();
  const done = collect(child);
  after(async () => {
    child.kill('SIGINT');
    await done;
  });
  const url = (await waitForOutput(child.stdout, /listening on (https:\/\/127\.0\.0\.1:(\d+))/))[1]!;
  const hostPort = new URL(url).host;
  const here = (s: string) => s.replaceAll('127.0.0.1:8443', hostPort);

  const tokenOut = execFileSync('/bin/sh', ['-c', `${here(token!)}; printf %s "$DROPBOX_ACCESS_TOKEN"`], { cwd: dir, env: { PATH: '/usr/bin:/bin' } }).toString();
  assert.match(tokenOut, /^sl\.\S+$/);
  writeFileSync(join(dir, 'example.py'), here(py));
  const r = await run(['example.py'], { cwd: dir, env: { DROPBOX_ACCESS_TOKEN: tokenOut } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'demo@example.com');

  // "ca_certs alone fails with CERTIFICATE_VERIFY_FAILED": the same lines with ca_certs instead.
  const withCaCerts = here(py)
    .replace(/^os\.environ\["REQUESTS_CA_BUNDLE"\].*$/m, '')
    .replace('oauth2_access_token=os.environ["DROPBOX_ACCESS_TOKEN"]', 'oauth2_access_token=os.environ["DROPBOX_ACCESS_TOKEN"], ca_certs="cert.pem"');
  assert.notEqual(withCaCerts, here(py));
  writeFileSync(join(dir, 'ca-certs.py'), withCaCerts);
  const refused = await run(['ca-certs.py'], { cwd: dir, env: { DROPBOX_ACCESS_TOKEN: tokenOut } });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /CERTIFICATE_VERIFY_FAILED/);
});

test('docs/proxy.md: the Python SDK example lists a folder through dropkey serve\'s proxy with an API key', { skip: missing(), timeout: 120_000 }, async () => {
  const [py] = blocks('proxy.md', /The Python SDK/, 'python');
  assert.ok(py);
  assert.match(py, /proxy = "dropkey\.example\.com\/proxy\/nightly_backup"/);
  const rig = await makeServerRig();
  after(() => rig.close());
  await rig.connection('nightly_backup');
  const key = await rig.key(['proxy'], ['nightly_backup'], 'python-worker');
  const listener = await bind(0, '127.0.0.1');
  listener.setApp(rig.app);
  after(() => listener.close(0));
  const front = await startTlsFront(`http://127.0.0.1:${listener.port}`);
  after(() => front.close());
  // Something to list, put there through the proxy.
  const up = await fetch(`http://127.0.0.1:${listener.port}/proxy/nightly_backup/2/files/upload`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': JSON.stringify({ path: '/reports/today.csv' }) },
    body: 'a,b\n',
  });
  assert.equal(up.status, 200, await up.text());
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-py-proxy-doc-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'example.py'), py.replace('dropkey.example.com', front.hostPort));
  const r = await run(['example.py'], { cwd: dir, env: { DROPKEY_API_KEY: key, REQUESTS_CA_BUNDLE: front.caFile } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), '/reports');
  assert.ok(front.seen.includes(`${front.hostPort} /proxy/nightly_backup/2/files/list_folder`), front.seen.join('\n'));
});
