/**
 * docs/deploying.md ("What the cluster guarantees"): 3 `dropkey serve` instances and 2 CLI processes on one PostgreSQL database and
 * one emulator; 2,000 concurrent token requests spread over them while the token is expired → exactly one refresh
 * at the emulator, and every request gets a valid token.
 *
 * The emulator holds the one refresh for 1.5 s (a delay fault on oauth2/token, served normally afterwards) so that
 * the callers really pile up on every instance while the refresh lock is held.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { httpGetJson, pool, skipReason, startCluster } from './rig.js';

const skip = skipReason();
const HTTP_REQUESTS = 1_600; // over the 3 servers
const CLI_CALLS = 200; // per CLI process (2 processes)

test('2,000 concurrent token requests over 3 serve instances and 2 CLI processes: one refresh, every token valid', { skip: skip ?? false, timeout: 90_000 }, async () => {
  const c = await startCluster();
  const cliHome = mkdtempSync(join(tmpdir(), 'dropkey-cluster-cli-'));
  const children: { kill(signal?: NodeJS.Signals): boolean }[] = [];
  try {
    await c.connection('shared');
    // Dropbox's clock moves past the access token's 4-hour lifetime: the old token is dead there too.
    await c.emu.control.advanceClock(4 * 3600 + 1);
    const [a, b, d] = await Promise.all([c.startInstance(), c.startInstance(), c.startInstance()]);
    const servers = [a!, b!, d!];
    const key = await c.apiKey();

    // The CLI processes start, load everything, and wait for "go".
    const drivers = [0, 1].map(() => {
      const proc = spawn(process.execPath, [resolve('test/cluster/cli-driver.mjs'), 'shared', String(CLI_CALLS), '4'], {
        env: { ...c.env, DROPKEY_HOME: cliHome },
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      children.push(proc);
      const results: { ok: boolean; token?: string; error?: string }[] = [];
      createInterface({ input: proc.stdout! }).on('line', (l) => results.push(JSON.parse(l)));
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      return { proc, results, exited };
    });

    await c.emu.control.clearRequests();
    await c.emu.control.fault({ route: 'oauth2/token', status: 200, delay_ms: 1_500, count: 1 });

    const agent = new Agent({ keepAlive: true, maxSockets: 32 });
    const started = Date.now();
    for (const drv of drivers) drv.proc.stdin!.end('go\n');
    const tasks = Array.from({ length: HTTP_REQUESTS }, (_, i) => () =>
      httpGetJson(`${servers[i % servers.length]!.url}/api/v1/connections/shared/token`, { authorization: `Bearer ${key}` }, agent),
    );
    const answers = await pool(tasks, 96);
    const codes = await Promise.all(drivers.map((drv) => drv.exited));
    const elapsed = Date.now() - started;
    agent.destroy();

    assert.deepEqual(codes, [0, 0], 'both CLI processes finished');
    const cliResults = drivers.flatMap((drv) => drv.results);
    assert.equal(cliResults.length, 2 * CLI_CALLS);
    const failedCli = cliResults.filter((r) => !r.ok);
    assert.deepEqual(failedCli, [], 'every CLI call got a token');
    const bad = answers.filter((r) => r.status !== 200 || typeof r.body?.access_token !== 'string');
    assert.equal(bad.length, 0, `every HTTP request got a token (first failure: ${JSON.stringify(bad[0]?.body)?.slice(0, 300)})`);
    for (const r of answers) assert.equal(r.body.refresh_token, undefined, 'the API never hands out the refresh token');

    // Exactly one refresh reached "Dropbox".
    assert.equal(await c.tokenRequests(), 1, 'exactly one oauth2/token request at the emulator');

    // Every caller got the one token that refresh produced, and Dropbox accepts it.
    const stored = await c.store.getConnection('shared');
    assert.ok(stored?.accessToken && stored.accessTokenExpiresAt! > Date.now());
    const tokens = new Set([...answers.map((r) => r.body.access_token as string), ...cliResults.map((r) => r.token!)]);
    assert.deepEqual([...tokens], [stored.accessToken], 'all 2,000 callers hold the same, freshly refreshed token');
    const check = await c.emu.rpc('check/user', { query: 'cluster' }, stored.accessToken);
    assert.equal(check.status, 200, 'the token is valid at the emulator');
    assert.ok(stored.refreshToken, 'the refresh token is kept');
    console.log(JSON.stringify({ test: 'many-instances', requests: HTTP_REQUESTS + 2 * CLI_CALLS, elapsed_ms: elapsed }));
  } finally {
    for (const p of children) p.kill('SIGKILL');
    rmSync(cliHome, { recursive: true, force: true });
    await c.close();
  }
});
