/**
 * The Node listener on 127.0.0.1 port 0: streaming both ways, early answers to large uploads, dropped
 * connections, garbage on the socket, and HTTPS.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createEmulator, DEMO_APP_KEY, DEMO_ACCOUNT_EMAIL, type Emulator } from './index.js';

let emu: Emulator;
let url: string;
let token: string;
/** What the emulator reported as its own bugs: nothing a client does may land here. */
const bugs: unknown[] = [];

before(async () => {
  emu = createEmulator({ onError: (err) => bugs.push(err) });
  ({ url } = await emu.listen(0, '127.0.0.1'));
  token = ((await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL })) as { access_token: string }).access_token;
});
after(() => emu.close());

/** A body produced chunk by chunk, never held whole in memory. */
function generated(total: number, chunk = 1 << 20): { stream: ReadableStream<Uint8Array>; sha: () => string } {
  const hash = createHash('sha256');
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent >= total) return c.close();
      const n = Math.min(chunk, total - sent);
      const buf = new Uint8Array(n);
      for (let i = 0; i < n; i++) buf[i] = (sent + i) % 251;
      sent += n;
      hash.update(buf);
      c.enqueue(buf);
    },
  });
  return { stream, sha: () => hash.digest('hex') };
}

test('listen: URL on 127.0.0.1 with the real port', () => {
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(emu.url, url);
});

test('a 40 MiB chunked upload streams in and the download streams out with the same bytes', async () => {
  const size = 40 * 1024 * 1024;
  const body = generated(size);
  const up = await fetch(`${url}/2/files/upload`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': '{"path":"/big.bin","mode":"overwrite"}' },
    body: body.stream,
    duplex: 'half',
  } as RequestInit);
  assert.equal(up.status, 200, await up.clone().text());
  assert.equal((await up.json()).size, size);
  const down = await fetch(`${url}/2/files/download`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Dropbox-API-Arg': '{"path":"/big.bin"}' } });
  assert.equal(down.status, 200);
  assert.equal(down.headers.get('content-length'), String(size));
  const hash = createHash('sha256');
  let got = 0;
  for await (const chunk of down.body as unknown as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    got += chunk.byteLength;
  }
  assert.equal(got, size);
  assert.equal(hash.digest('hex'), body.sha());
});

test('an upload refused before its body is read still gets its answer, and the server stays up', async () => {
  const r = await fetch(`${url}/2/files/upload`, {
    method: 'POST',
    headers: { Authorization: 'Bearer sl.u.unknownunknownunknown', 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': '{"path":"/x.bin"}' },
    body: generated(8 * 1024 * 1024).stream,
    duplex: 'half',
  } as RequestInit);
  assert.equal(r.status, 401);
  assert.equal((await r.json()).error['.tag'], 'invalid_access_token');
  const ok = await fetch(`${url}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(ok.status, 200);
});

test('reset_connection drops the socket; the next request is served', async () => {
  await emu.control.fault({ route: 'users/get_current_account', status: 500, reset_connection: true });
  await assert.rejects(fetch(`${url}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } }));
  const log = await emu.control.requests();
  assert.equal(log.at(-1)?.status, 0);
  const ok = await fetch(`${url}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(ok.status, 200);
});

test('garbage on the socket gets a 400 and the server stays up', async () => {
  const reply = await new Promise<string>((resolve, reject) => {
    const port = Number(new URL(url).port);
    const s = connect(port, '127.0.0.1', () => s.write('NOT HTTP AT ALL\r\n\r\n'));
    let data = '';
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('end', () => resolve(data));
    s.on('error', reject);
  });
  assert.match(reply, /^HTTP\/1\.1 400/);
  const invalidUtf8Header = await new Promise<string>((resolve, reject) => {
    const port = Number(new URL(url).port);
    const s = connect(port, '127.0.0.1', () => {
      s.write(Buffer.concat([
        Buffer.from(`POST /2/files/download HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\nDropbox-API-Arg: {"path":"/`),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('"}\r\nContent-Length: 0\r\n\r\n'),
      ]));
    });
    let data = '';
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('end', () => resolve(data));
    s.on('error', reject);
  });
  assert.match(invalidUtf8Header, /^HTTP\/1\.1 400/);
  assert.match(invalidUtf8Header, /could not decode input as UTF-8/);
  const ok = await fetch(`${url}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(ok.status, 200);
});

/** Waits (on the request log, no fixed sleep) until the emulator has finished `n` more requests. */
async function logGrows(from: number, n: number): Promise<Awaited<ReturnType<Emulator['control']['requests']>>> {
  for (let i = 0; i < 500; i++) {
    const log = await emu.control.requests();
    if (log.length >= from + n) return log.slice(from);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('the emulator did not finish the requests');
}

test('clients that hang up mid-request (upload, rpc, token) are not reported as emulator bugs; the server stays up', async () => {
  const port = Number(new URL(url).port);
  const before = (await emu.control.requests()).length;
  const partial = [
    `POST /2/files/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nDropbox-API-Arg: {"path":"/cut.bin"}\r\nContent-Length: 100000\r\n\r\nabc`,
    `POST /2/files/upload_session/start HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nDropbox-API-Arg: {}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`,
    `POST /2/files/list_folder HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pa`,
    `POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_`,
  ];
  for (const head of partial) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.write(head, () => setImmediate(() => s.destroy()));
  }
  const log = await logGrows(before, partial.length);
  assert.deepEqual(log.map((e) => e.status), [499, 499, 499, 499], JSON.stringify(log.map((e) => [e.path, e.status])));
  assert.deepEqual(bugs, []);
  const listed = await fetch(`${url}/2/files/list_folder`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: '{"path":""}' });
  assert.equal(listed.status, 200);
  assert.ok(!(await listed.json()).entries.some((e: { name: string }) => e.name === 'cut.bin'), 'a cut upload leaves no file');
});

test('downloads abandoned by the client release their file handles (--data)', { skip: existsSync('/proc/self/fd') ? false : 'needs /proc/self/fd (Linux)' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-node-'));
  const disk = createEmulator({ dataDir: dir, onError: (err) => bugs.push(err) });
  try {
    const base = (await disk.listen(0, '127.0.0.1')).url;
    const t = ((await disk.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL })) as { access_token: string }).access_token;
    const headers = { Authorization: `Bearer ${t}`, 'Dropbox-API-Arg': '{"path":"/abandoned.bin"}' };
    const up = await fetch(`${base}/2/files/upload`, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/octet-stream' }, body: Buffer.alloc(16 * 1024 * 1024, 7) });
    assert.equal(up.status, 200);
    const openFds = () => readdirSync('/proc/self/fd').length;
    const baseline = openFds();
    for (let i = 0; i < 10; i++) {
      // Read the first chunk of a 16 MiB download, then hang up.
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest(`${base}/2/files/download`, { method: 'POST', headers }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
        req.end();
      });
    }
    // The server notices the hang-ups asynchronously: wait (bounded) for the descriptors to come back.
    let open = openFds();
    for (let i = 0; i < 300 && open > baseline + 2; i++) {
      await new Promise((r) => setTimeout(r, 10));
      open = openFds();
    }
    assert.ok(open <= baseline + 2, `file handles leaked: ${open - baseline} still open after 10 abandoned downloads`);
  } finally {
    await disk.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('no client input above was reported as an emulator bug', () => {
  assert.deepEqual(bugs, []);
});

function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('HTTPS with --tls-cert/--tls-key', { skip: opensslAvailable() ? false : 'openssl is not installed' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const cert = readFileSync(join(dir, 'cert.pem'));
    const tls = createEmulator({ tls: { cert, key: readFileSync(join(dir, 'key.pem')) } });
    const { url: secure } = await tls.listen(0);
    try {
      assert.match(secure, /^https:\/\/127\.0\.0\.1:\d+$/);
      const g = (await tls.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL })) as { access_token: string };
      const body = await new Promise<string>((resolve, reject) => {
        const req = httpsRequest(`${secure}/2/users/get_current_account`, { method: 'POST', ca: cert, headers: { Authorization: `Bearer ${g.access_token}` } }, (res) => {
          let data = '';
          res.on('data', (d) => (data += d));
          res.on('end', () => resolve(data));
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(JSON.parse(body).email, DEMO_ACCOUNT_EMAIL);
    } finally {
      await tls.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
