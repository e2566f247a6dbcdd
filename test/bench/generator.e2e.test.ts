/**
 * The benchmarks' load generator (bench/lib.mjs) catches wrong answers and reports its own CPU:
 * wrk by status and total byte count, autocannon by status and exact body. Each case needs its generator and
 * skips, saying what to install, when it is absent.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// bench/ is plain JavaScript outside the typed tree: imported by a computed path, typed as used here.
interface Run {
  requests: number;
  rps: number;
  errors: number;
  error_detail: Record<string, number>;
  p99_ms: number;
  gen_cpu_cores: number;
  gen_saturated: boolean;
}
interface Lib {
  pickGenerator(requested: string, threads?: number): { tool: string; threads: number };
  rawGet(url: string, authorization?: string): Promise<{ status: number; size: number; body: string }>;
  generate(gen: unknown, o: { url: string; authorization?: string; connections: number; durationS: number; expect?: unknown }): Promise<Run>;
}
const libPath = new URL('../../bench/lib.mjs', import.meta.url).href;
let lib: Lib;

const BODY = JSON.stringify({ access_token: 'x'.repeat(120), token_type: 'bearer' });
let n = 0;
/** Every 40th answer is wrong in the way the path says: one byte longer, a 500, or the same length but different. */
const server: Server = createServer((req, res) => {
  const bad = ++n % 40 === 0;
  const body = bad && req.url === '/longer' ? `${BODY} ` : bad && req.url === '/other' ? BODY.replace('bearer', 'BEARER') : BODY;
  res.writeHead(bad && req.url === '/status' ? 500 : 200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});
let base = '';

before(async () => {
  lib = (await import(libPath)) as Lib;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

function generatorOrSkip(t: { skip(reason: string): void }, tool: string): unknown {
  try {
    return lib.pickGenerator(tool);
  } catch (err) {
    t.skip(`${tool} is not available: ${(err as Error).message}`);
    return undefined;
  }
}

for (const tool of ['wrk', 'autocannon']) {
  describe(`load generator: ${tool}`, () => {
    test('right answers: no errors, its CPU use measured', async (t) => {
      const gen = generatorOrSkip(t, tool);
      if (!gen) return;
      const expect = await lib.rawGet(`${base}/ok`);
      const r = await lib.generate(gen, { url: `${base}/ok`, connections: 8, durationS: 1, expect });
      // Counts only loosely: on a busy machine a second may hold few requests, and CPU time comes in 10 ms ticks.
      assert.ok(r.requests > 0, `${r.requests} requests`);
      assert.equal(r.errors, 0, JSON.stringify(r.error_detail));
      assert.ok(Number.isFinite(r.gen_cpu_cores) && r.gen_cpu_cores >= 0 && r.gen_cpu_cores < 4, `generator CPU ${r.gen_cpu_cores} cores`);
      assert.ok(r.p99_ms > 0);
    });

    test('a wrong status is counted as an error', async (t) => {
      const gen = generatorOrSkip(t, tool);
      if (!gen) return;
      const expect = await lib.rawGet(`${base}/status`);
      const r = await lib.generate(gen, { url: `${base}/status`, connections: 8, durationS: 1, expect });
      assert.ok(r.errors > 0 && r.error_detail['status']! > 0, JSON.stringify(r));
    });

    test('an answer of another size is counted as an error', async (t) => {
      const gen = generatorOrSkip(t, tool);
      if (!gen) return;
      const expect = await lib.rawGet(`${base}/longer`);
      const r = await lib.generate(gen, { url: `${base}/longer`, connections: 8, durationS: 1, expect });
      assert.ok(r.errors > 0, JSON.stringify(r));
    });
  });
}

test('autocannon also catches a body of the same size with other bytes', async (t) => {
  const gen = generatorOrSkip(t, 'autocannon');
  if (!gen) return;
  const expect = await lib.rawGet(`${base}/other`);
  const r = await lib.generate(gen, { url: `${base}/other`, connections: 8, durationS: 1, expect });
  assert.ok(r.error_detail['body']! > 0, JSON.stringify(r));
});
