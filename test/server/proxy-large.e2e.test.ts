/**
 * docs/proxy.md ("Throughput"): a 300 MiB upload and download through the proxy with the server's RSS under
 * 150 MB. The server is the built CLI (`node dist/cli/main.js serve`, so `npm run build` first) in a child process;
 * its peak RSS is VmHWM from /proc/<pid>/status (Linux). The emulator runs in this process with a data directory,
 * the data is generated chunk by chunk and hashed as it goes (Dropbox content_hash, https://www.dropbox.com/developers/reference/content-hash), so
 * nothing here holds the file in memory either.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { Dropkey } from '../../src/connections/dropkey.js';
import { dropboxUrlsFromBase } from '../../src/dropbox/hosts.js';
import { openServerStores } from '../../src/server/main.js';
import { readConfig } from '../../src/config.js';
import { generateApiKey } from '../../src/server/security/secrets.js';
import { BLOCK_SIZE, patternBytes } from '../helpers/content-hash.js';
import { headerSafeJson, startEmulator, type StartedEmulator } from '../helpers/emulator.js';

const MiB = 1024 * 1024;
const TOTAL = 300 * MiB;
/** Three appends of 100 MiB: under Dropbox's 150 MiB per request, each a single streamed request. */
const APPEND = 100 * MiB;
const CHUNK = MiB;
const RSS_LIMIT_MB = 150;
const CLI = join(import.meta.dirname, '../../dist/cli/main.js');

let emu: StartedEmulator;
let server: ChildProcess;
let base: string;
let key: string;
const dirs: string[] = [];

/** Dropbox's content_hash, fed incrementally: SHA-256 of each 4 MiB block, then SHA-256 of the digests. */
class ContentHash {
  #block = createHash('sha256');
  #filled = 0;
  #digests: Buffer[] = [];
  update(data: Uint8Array): void {
    for (let off = 0; off < data.length; ) {
      const n = Math.min(BLOCK_SIZE - this.#filled, data.length - off);
      this.#block.update(data.subarray(off, off + n));
      this.#filled += n;
      off += n;
      if (this.#filled === BLOCK_SIZE) {
        this.#digests.push(this.#block.digest());
        this.#block = createHash('sha256');
        this.#filled = 0;
      }
    }
  }
  digest(): string {
    if (this.#filled > 0) this.#digests.push(this.#block.digest());
    return createHash('sha256').update(Buffer.concat(this.#digests)).digest('hex');
  }
}

function vm(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const kb = Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return kb / 1024;
}

before(async () => {
  assert.ok(existsSync(CLI), 'dist/cli/main.js is missing: run `npm run build` first');
  const emuData = mkdtempSync(join(tmpdir(), 'dropkey-proxy-emu-'));
  const home = mkdtempSync(join(tmpdir(), 'dropkey-proxy-home-'));
  dirs.push(emuData, home);
  emu = await startEmulator({ dataDir: emuData });
  const app = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  const account = await emu.control.createAccount();
  const grant = await emu.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' });

  // The server's store, prepared as `dropkey app add`, `dropkey import` and `dropkey apikey create` would.
  const env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: randomBytes(32).toString('base64'), DROPKEY_DROPBOX_URL: emu.url, DROPKEY_LOG_LEVEL: 'warn' };
  const stores = await openServerStores(await readConfig(env));
  const dk = await Dropkey.open({ store: stores.core, urls: dropboxUrlsFromBase(emu.url) });
  await dk.addApp({ name: 'main', key: app.key, secret: app.secret!, scopes: app.scopes });
  await dk.import({ connection: 'big', app: 'main', refreshToken: grant.refresh_token! });
  const k = generateApiKey();
  await stores.server.createApiKey({ name: 'big', prefix: k.prefix, hash: k.hash, permissions: ['proxy'], connections: ['big'], createdBy: 'test' }, Date.now());
  key = k.key;
  await dk.close();
  await stores.close();

  server = spawn(process.execPath, [CLI, 'serve', '--port', '0'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  base = await new Promise<string>((resolve, reject) => {
    createInterface({ input: server.stdout! }).on('line', (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) resolve(m[1]!);
    });
    server.once('exit', (code) => reject(new Error(`dropkey serve exited early (code ${code})`)));
  });
});

after(async () => {
  // A child that already died by a signal has exitCode null too: waiting for its 'exit' would hang forever.
  if (server && server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    // A graceful stop waits for open requests; a stuck one must not leave the child running after the test.
    const force = setTimeout(() => server.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(force);
  }
  await emu?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function call(route: string, arg: unknown, body: BodyInit | null, extra: RequestInit = {}): Promise<Response> {
  return fetch(`${base}/proxy/big/2/${route}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': headerSafeJson(arg) },
    body,
    ...extra,
  });
}

/** `size` bytes generated 1 MiB at a time (each chunk differs), hashed into `hash` as they are handed out. */
function generated(size: number, firstChunk: number, hash: ContentHash): ReadableStream<Uint8Array> {
  const pattern = patternBytes(CHUNK, 0x5eed);
  let sent = 0;
  let n = firstChunk;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= size) return controller.close();
      const chunk = Buffer.from(pattern.subarray(0, Math.min(CHUNK, size - sent)));
      chunk.writeUInt32LE(n++, 0);
      hash.update(chunk);
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
}

test('300 MiB up and down through the proxy: same content_hash, server RSS under 150 MB', { timeout: 240_000 }, async () => {
  let rssMax = 0;
  const sampler = setInterval(() => {
    rssMax = Math.max(rssMax, vm(server.pid!, 'VmRSS'));
  }, 50);
  try {
    const expected = new ContentHash();
    const start = await call('files/upload_session/start', {}, new Uint8Array(0));
    assert.equal(start.status, 200, await start.clone().text());
    const { session_id } = (await start.json()) as { session_id: string };
    for (let offset = 0; offset < TOTAL; offset += APPEND) {
      const res = await call('files/upload_session/append_v2', { cursor: { session_id, offset } }, generated(APPEND, offset / CHUNK, expected), { duplex: 'half' } as RequestInit);
      assert.equal(res.status, 200, await res.text());
    }
    const finish = await call('files/upload_session/finish', { cursor: { session_id, offset: TOTAL }, commit: { path: '/big/300.bin' } }, new Uint8Array(0));
    assert.equal(finish.status, 200);
    const meta = (await finish.json()) as { size: number; content_hash: string };
    const hash = expected.digest();
    assert.equal(meta.size, TOTAL);
    assert.equal(meta.content_hash, hash);

    const down = await fetch(`${base}/proxy/big/2/files/download`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Dropbox-API-Arg': headerSafeJson({ path: '/big/300.bin' }) },
    });
    assert.equal(down.status, 200);
    assert.equal(down.headers.get('content-length'), String(TOTAL));
    assert.equal(JSON.parse(down.headers.get('dropbox-api-result')!).content_hash, hash);
    const got = new ContentHash();
    let received = 0;
    for await (const chunk of down.body as unknown as AsyncIterable<Uint8Array>) {
      got.update(chunk);
      received += chunk.length;
    }
    assert.equal(received, TOTAL);
    assert.equal(got.digest(), hash);
  } finally {
    clearInterval(sampler);
  }
  const peak = vm(server.pid!, 'VmHWM');
  console.log(`dropkey serve peak RSS ${peak.toFixed(1)} MB (sampled max ${rssMax.toFixed(1)} MB) for ${TOTAL / MiB} MiB each way`);
  assert.ok(peak < RSS_LIMIT_MB, `server peak RSS ${peak.toFixed(1)} MB >= ${RSS_LIMIT_MB} MB`);
});
