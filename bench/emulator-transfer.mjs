#!/usr/bin/env node
// Emulator transfer benchmark (docs/emulator.md): uploads 1 GiB through an upload session to `dropkey emulator --data DIR`,
// downloads it back, checks the content_hash, and reports MB/s each way and the emulator's peak RSS.
//
//   npm run build && node bench/emulator-transfer.mjs [--size-mib 1024] [--chunk-mib 8] [--runs 3]
//
// Each run starts a fresh emulator child process (the built CLI, --port 0, a temporary --data directory), gets a
// token from POST /_emulator/grants, and measures wall time around the HTTP calls only. Peak RSS is the child's
// VmHWM from /proc/<pid>/status (Linux). The last line of output is a JSON summary (medians of the runs).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'chunk-mib': { type: 'string', default: '8' },
    runs: { type: 'string', default: '3' },
  },
});
const MiB = 1024 * 1024;
const SIZE = Number(values['size-mib']) * MiB;
const CHUNK = Number(values['chunk-mib']) * MiB;
const RUNS = Number(values.runs);
const RSS_GOAL_MB = 200;
if (!(SIZE > 0 && CHUNK > 0 && CHUNK <= 150 * MiB && RUNS > 0)) {
  console.error('usage: node bench/emulator-transfer.mjs [--size-mib N] [--chunk-mib 1..150] [--runs N]');
  process.exit(2);
}

const { ContentHasher } = await import(join(root, 'dist/dropbox/content-hash.js')).catch(() => {
  console.error('dist/ is missing: run `npm run build` first');
  process.exit(2);
});
const { DEMO_APP_KEY, DEMO_ACCOUNT_EMAIL } = await import(join(root, 'dist/emulator/index.js'));

/** Starts the emulator and resolves with its base URL once it prints its first line. */
function startEmulator(dataDir) {
  const child = spawn(process.execPath, [join(root, 'dist/cli/main.js'), 'emulator', '--port', '0', '--data', dataDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      const m = /listening on (http\S+)/.exec(line);
      if (m) resolve(m[1]);
      else reject(new Error(`unexpected first line from the emulator: ${line}`));
      lines.on('line', () => {}); // keep draining stdout
    });
    child.once('exit', (code) => reject(new Error(`emulator exited early (code ${code})`)));
  });
  return { child, url };
}

function peakRssMB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]);
  return kb / 1024;
}

async function call(base, token, route, arg, body) {
  const upload = body !== undefined;
  const res = await fetch(`${base}/2/${route}`, {
    method: 'POST',
    headers: upload
      ? { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': JSON.stringify(arg) }
      : { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: upload ? body : JSON.stringify(arg),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${route}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Generated content, chunk by chunk: a random base block varied per chunk, never the whole file in memory. */
function* chunks() {
  const base = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i += 4) base.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
  for (let offset = 0, n = 0; offset < SIZE; offset += CHUNK, n++) {
    const len = Math.min(CHUNK, SIZE - offset);
    base.writeUInt32LE(n, 0); // every chunk differs
    yield base.subarray(0, len);
  }
}

async function run(index) {
  const dataDir = mkdtempSync(join(tmpdir(), 'dropkey-bench-'));
  const { child, url } = startEmulator(dataDir);
  try {
    const base = await url;
    const grant = await fetch(`${base}/_emulator/grants`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL }),
    });
    if (grant.status !== 201) throw new Error(`grant failed: HTTP ${grant.status} ${await grant.text()}`);
    const token = (await grant.json()).access_token;

    const expected = new ContentHasher();
    const t0 = performance.now();
    const { session_id } = await call(base, token, 'files/upload_session/start', {}, Buffer.alloc(0));
    let offset = 0;
    for (const chunk of chunks()) {
      expected.update(chunk);
      await call(base, token, 'files/upload_session/append_v2', { cursor: { session_id, offset } }, chunk);
      offset += chunk.length;
    }
    const meta = await call(base, token, 'files/upload_session/finish', {
      cursor: { session_id, offset },
      commit: { path: '/bench/transfer.bin', mode: 'overwrite' },
    }, Buffer.alloc(0));
    const upSeconds = (performance.now() - t0) / 1000;
    const hash = expected.digest();
    if (meta.size !== SIZE || meta.content_hash !== hash) throw new Error(`upload mismatch: ${JSON.stringify(meta)}`);

    const t1 = performance.now();
    const res = await fetch(`${base}/2/files/download`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Dropbox-API-Arg': JSON.stringify({ path: '/bench/transfer.bin' }) },
    });
    if (res.status !== 200) throw new Error(`download: HTTP ${res.status} ${await res.text()}`);
    const got = new ContentHasher();
    let received = 0;
    for await (const chunk of res.body) {
      got.update(chunk);
      received += chunk.length;
    }
    const downSeconds = (performance.now() - t1) / 1000;
    const downHash = got.digest();
    const resultHash = JSON.parse(res.headers.get('dropbox-api-result')).content_hash;
    if (received !== SIZE || downHash !== hash || resultHash !== hash) throw new Error('download content_hash mismatch');

    const result = {
      run: index,
      upload_MBps: SIZE / 1e6 / upSeconds,
      download_MBps: SIZE / 1e6 / downSeconds,
      peak_rss_MB: peakRssMB(child.pid),
    };
    console.log(`run ${index}: upload ${result.upload_MBps.toFixed(1)} MB/s, download ${result.download_MBps.toFixed(1)} MB/s, emulator peak RSS ${result.peak_rss_MB.toFixed(1)} MB`);
    return result;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const round = (x) => Math.round(x * 10) / 10;

const results = [];
for (let i = 1; i <= RUNS; i++) results.push(await run(i));
const peak = Math.max(...results.map((r) => r.peak_rss_MB));
const summary = {
  bench: 'emulator-transfer',
  size_bytes: SIZE,
  chunk_bytes: CHUNK,
  runs: RUNS,
  upload_MBps: round(median(results.map((r) => r.upload_MBps))),
  download_MBps: round(median(results.map((r) => r.download_MBps))),
  peak_rss_MB: round(median(results.map((r) => r.peak_rss_MB))),
  peak_rss_MB_max: round(peak),
  rss_goal_MB: RSS_GOAL_MB,
  rss_ok: peak < RSS_GOAL_MB,
  node: process.version,
};
console.log(JSON.stringify(summary));
process.exitCode = summary.rss_ok ? 0 : 1;
