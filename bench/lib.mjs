// Shared pieces of the HTTP benchmarks (serve-token.mjs, store-compare.mjs).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';

export const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Spawns a node process in `cwd` and resolves with the first stdout line matching `re` (and the child). */
export async function startChild(cwd, args, env, re) {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    if (stderr.length < 20_000) stderr += d;
  });
  const rl = createInterface({ input: child.stdout });
  const match = await new Promise((resolve, reject) => {
    rl.on('line', (l) => {
      const m = re.exec(l);
      if (m) resolve(m);
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${stderr.slice(0, 2000)}`)));
  });
  return { child, match };
}

export async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

/**
 * The closed-loop load generator: `connections` loops, each sending the next GET when the previous answer has been
 * read, over a keep-alive agent with exactly that many sockets; every body is checked against `expectBody` when
 * given. Latencies after the warm-up are kept in a bounded typed array.
 */
export async function load(url, headers, expectBody, { connections, warmupMs, durationMs }) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const u = new URL(url);
  const MAX_SAMPLES = 4_000_000;
  const lat = new Float64Array(MAX_SAMPLES);
  let n = 0;
  let errors = 0;
  let recording = false;
  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = request({ agent, host: u.hostname, port: u.port, path: u.pathname, method: 'GET', headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const ok = res.statusCode === 200 && (expectBody === undefined || Buffer.concat(chunks).toString() === expectBody);
          if (!ok) errors++;
          if (recording && n < MAX_SAMPLES) lat[n++] = performance.now() - t0;
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end();
    });
  const stopAt = performance.now() + warmupMs + durationMs;
  const loops = Array.from({ length: connections }, async () => {
    while (performance.now() < stopAt) await one();
  });
  await new Promise((r) => setTimeout(r, warmupMs));
  recording = true;
  const t0 = performance.now();
  await Promise.all(loops);
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  const sample = lat.subarray(0, n).sort();
  const pct = (p) => sample[Math.min(sample.length - 1, Math.floor((p / 100) * sample.length))] ?? NaN;
  return { rps: Math.round(n / elapsed), p50_ms: +pct(50).toFixed(3), p99_ms: +pct(99).toFixed(3), requests: n, errors };
}
