/**
 * docs/deploying.md ("What the cluster guarantees"): PostgreSQL restarted under load → nothing lost; the service recovers without a
 * restart of its own; still-valid cached tokens keep being handed out; refreshes wait or fail cleanly.
 *
 * The restart is real (pg_ctl restart -m fast) on a private PostgreSQL server started for this test (see
 * private-pg.ts: restarting the shared test server would break other test files running at the same time). A
 * second disruption terminates every client backend (pg_terminate_backend), as a failover or an admin would.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { test } from 'node:test';
import pg from 'pg';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { httpGetJson, MAIN_JS, skipReason, startCluster } from './rig.js';
import { startPrivatePostgres } from './private-pg.js';

test('PostgreSQL restarted under load: cached tokens keep flowing, refreshes wait or fail cleanly, nothing lost, no service restart', { timeout: 90_000 }, async (t) => {
  if (!existsSync(MAIN_JS)) return t.skip('dist/cli/main.js is missing (run npm run build first)');
  const server = await startPrivatePostgres();
  if ('skip' in server) return t.skip(server.skip);
  const c = await startCluster({ baseUrl: server.url });
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  let loader: Load | undefined;
  try {
    const names = ['cached', 'during-restart', 'during-terminate', 'during-outage', 'after'];
    const refreshTokens = new Map<string, string>();
    for (const n of names) refreshTokens.set(n, (await c.connection(n)).refreshToken);
    const instances = await Promise.all([c.startInstance(), c.startInstance()]);
    const key = await c.apiKey();
    const auth = { authorization: `Bearer ${key}` };
    const get = (i: number, name: string) => httpGetJson(`${instances[i % 2]!.url}/api/v1/connections/${name}/token`, auth, agent);

    // Both instances hold the token of "cached" in memory.
    const warm = await Promise.all([get(0, 'cached'), get(1, 'cached')]);
    assert.deepEqual(warm.map((w) => w.status), [200, 200]);
    const cachedToken = warm[0]!.body.access_token as string;

    // Load: token requests for "cached" on both instances, 8 at a time, until the disruptions are over.
    loader = startLoad(get, 'cached');
    const { load } = loader;

    // 1. A real restart, with a refresh asked for while it happens.
    const restarting = server.restart();
    const duringRestart = get(0, 'during-restart');
    await restarting;
    const r1 = await duringRestart;
    // 2. Every client backend terminated, with a refresh asked for right after. A database read on each instance
    //    first, so that both hold live connections again after the restart.
    for (const i of instances) assert.equal((await httpGetJson(`${i.url}/api/v1/connections`, auth, agent)).status, 200);
    const admin = new pg.Client({ connectionString: server.url });
    admin.on('error', () => {});
    await admin.connect();
    const killed = await admin.query("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'");
    await admin.end();
    assert.ok(Number(killed.rows[0].n) > 0, 'the instances had connections to terminate');
    const r2 = await get(1, 'during-terminate');
    // 3. PostgreSQL down for 3 seconds (the outage's length is the point here, not a wait for an event).
    await server.down();
    const outageStarted = Date.now();
    const loadBefore = load.length;
    const duringOutage = get(0, 'during-outage');
    await new Promise((r) => setTimeout(r, 3_000));
    const servedDuringOutage = load.length - loadBefore;
    await server.up();
    const r4 = await duringOutage;
    const r4Ms = Date.now() - outageStarted;
    await loader.stop();

    // Cached tokens were handed out throughout.
    assert.ok(load.length > 50, `the load kept going (${load.length} requests)`);
    const failed = load.filter((l) => l.status !== 200 || l.token !== cachedToken);
    assert.deepEqual(failed.slice(0, 3), [], `every cached-token request succeeded during the disruptions (${failed.length} of ${load.length} did not)`);

    // Refreshes during the disruption either waited it out or failed cleanly (a JSON error, no hang, no 500).
    assert.ok(servedDuringOutage > 20, `cached tokens were handed out while PostgreSQL was down (${servedDuringOutage})`);
    for (const [what, r] of [['restart', r1], ['terminate', r2], ['outage', r4]] as const) {
      const clean = r.status === 200 || (r.status === 503 && typeof r.body?.error?.code === 'string');
      assert.ok(clean, `refresh during the ${what}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    }

    // Recovered without restarting the service: same processes, refreshes and new API keys work.
    for (const i of instances) assert.equal(i.proc.exitCode, null, 'the instance is still the same process');
    for (const [i, n] of names.slice(1).entries()) {
      const r = await get(i, n);
      assert.equal(r.status, 200, `${n} refreshes after the recovery: ${JSON.stringify(r.body).slice(0, 300)}`);
    }
    const key2 = await c.apiKey();
    const r3 = await httpGetJson(`${instances[1]!.url}/api/v1/connections/after/token`, { authorization: `Bearer ${key2}` }, agent);
    assert.equal(r3.status, 200, 'a key created after the restart is accepted (the server store reconnected)');

    // Nothing lost: refresh tokens intact, every stored token valid at the emulator.
    for (const n of names) {
      const conn = await c.store.getConnection(n);
      assert.equal(conn?.refreshToken, refreshTokens.get(n), `${n} keeps its refresh token`);
      assert.equal(conn?.state, 'active');
      assert.equal((await c.emu.rpc('check/user', { query: 'x' }, conn!.accessToken)).status, 200, `${n}'s stored token is valid`);
    }
    console.log(JSON.stringify({ test: 'pg-restart', load_requests: load.length, refresh_during_restart: r1.status, refresh_during_terminate: r2.status, refresh_during_outage: r4.status, refresh_during_outage_code: r4.body?.error?.code, refresh_during_outage_ms: r4Ms, served_during_outage: servedDuringOutage }));
  } finally {
    // A failed assertion must not leave the load loop spinning against stopped instances.
    await loader?.stop();
    agent.destroy();
    await c.close();
    await server.stop();
  }
});

/**
 * The same on the SHARED test server, restarted with pg_ctlcluster as an operator would. Opt-in
 * (DROPKEY_TEST_PG_RESTART_SHARED=1): the restart breaks, for a second or two, every other test file using that
 * server at the same time, so the default suite relies on the private server above.
 */
test('the shared PostgreSQL cluster restarted with pg_ctlcluster under load (opt-in)', { timeout: 90_000 }, async (t) => {
  if (process.env['DROPKEY_TEST_PG_RESTART_SHARED'] !== '1') return t.skip('opt-in: set DROPKEY_TEST_PG_RESTART_SHARED=1 (it disturbs other tests using the shared server)');
  const reason = skipReason();
  if (reason) return t.skip(reason);
  const versions = existsSync('/etc/postgresql') ? readdirSync('/etc/postgresql') : [];
  if (versions.length === 0) return t.skip('no cluster under /etc/postgresql to restart with pg_ctlcluster');
  const c = await startCluster();
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  let loader: Load | undefined;
  try {
    const refreshTokens = new Map<string, string>();
    for (const n of ['cached', 'during-restart']) refreshTokens.set(n, (await c.connection(n)).refreshToken);
    const instances = await Promise.all([c.startInstance(), c.startInstance()]);
    const key = await c.apiKey();
    const get = (i: number, name: string) => httpGetJson(`${instances[i % 2]!.url}/api/v1/connections/${name}/token`, { authorization: `Bearer ${key}` }, agent);
    const warm = await Promise.all([get(0, 'cached'), get(1, 'cached')]);
    const cachedToken = warm[0]!.body.access_token as string;
    loader = startLoad(get, 'cached');
    const { load } = loader;
    const restarting = promisify(execFile)('pg_ctlcluster', ['--skip-systemctl-redirect', versions.sort().at(-1)!, 'main', 'restart']);
    const duringRestart = get(0, 'during-restart');
    await restarting;
    const r1 = await duringRestart;
    await loader.stop();
    assert.deepEqual(load.filter((l) => l.status !== 200 || l.token !== cachedToken).slice(0, 3), [], 'cached tokens flowed through the restart');
    assert.ok(r1.status === 200 || (r1.status === 503 && typeof r1.body?.error?.code === 'string'), `refresh during the restart: ${r1.status}`);
    assert.equal((await get(1, 'during-restart')).status, 200, 'refreshes work again without restarting dropkey');
    for (const [n, rt] of refreshTokens) assert.equal((await c.store.getConnection(n))?.refreshToken, rt);
    console.log(JSON.stringify({ test: 'pg-restart-shared', load_requests: load.length, refresh_during_restart: r1.status }));
  } finally {
    // A failed assertion must not leave the load loop spinning against stopped instances.
    await loader?.stop();
    agent.destroy();
    await c.close();
  }
});

type Get = (i: number, name: string) => Promise<{ status: number; body: any }>;
interface Load {
  readonly load: { status: number; token: unknown }[];
  /** Ends the load and waits for the requests in flight; safe to call twice. */
  stop(): Promise<void>;
}

/** Token requests for `name`, 8 at a time spread over the instances, recorded until stop(). */
function startLoad(get: Get, name: string): Load {
  let loading = true;
  const load: { status: number; token: unknown }[] = [];
  const workers = Array.from({ length: 8 }, async (_, w) => {
    for (let n = 0; loading; n++) {
      const r = await get(w + n, name).catch((err: Error) => ({ status: -1, body: { error: err.message } }));
      load.push({ status: r.status, token: r.body?.access_token ?? r.body });
    }
  });
  return {
    load,
    async stop() {
      loading = false;
      await Promise.all(workers);
    },
  };
}
