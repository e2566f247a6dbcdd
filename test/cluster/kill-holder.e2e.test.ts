/**
 * docs/deploying.md ("What the cluster guarantees"): `kill -9` of the instance holding the refresh lock, 20 times in a loop → each
 * time another instance completes the refresh within the lock timeout; no connection loses its refresh token;
 * nothing is corrupted.
 *
 * Making the holder deterministic: the emulator delays the next oauth2/token request by 20 s (longer than the
 * refresh lock's 15 s ttl, so a takeover that only waited for the lease to expire would fail the time bound).
 * One request goes to instance A; once the lock row exists and A's refresh has reached the emulator (the fault is
 * consumed), A is the holder, mid-refresh. It is SIGKILLed, and the same connection is asked from another
 * instance, which must take the lock over and refresh.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { test } from 'node:test';
import { LOCK_TTL_MS } from '../../src/connections/refresher.js';
import { httpGetJson, lockRows, skipReason, startCluster, type Instance } from './rig.js';

const ROUNDS = Number(process.env["DROPKEY_TEST_KILL_ROUNDS"] ?? 20);
const skip = skipReason();

/** Polls `check` (a database or emulator state, not a timer) until it holds. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test(`kill -9 of the refresh lock holder, ${ROUNDS} times: another instance refreshes within the lock timeout`, { skip: skip ?? false, timeout: 150_000 }, async () => {
  const c = await startCluster();
  const agent = new Agent({ keepAlive: false });
  try {
    const original = new Map<string, string>();
    for (let i = 0; i < ROUNDS; i++) original.set(`conn${i}`, (await c.connection(`conn${i}`)).refreshToken);
    await c.emu.control.advanceClock(4 * 3600 + 1);
    let live: Instance[] = await Promise.all([c.startInstance(), c.startInstance(), c.startInstance()]);
    const key = await c.apiKey();
    const auth = { authorization: `Bearer ${key}` };
    const takeovers: number[] = [];

    for (let round = 0; round < ROUNDS; round++) {
      const name = `conn${round}`;
      const [holder, other] = [live[0]!, live[1 + (round % (live.length - 1))]!];
      await c.emu.control.fault({ route: 'oauth2/token', status: 200, delay_ms: 20_000, count: 1 });
      const doomed = httpGetJson(`${holder.url}/api/v1/connections/${name}/token`, auth, agent).catch((err: Error) => ({ status: -1, body: err.message }));
      let answered: unknown;
      void doomed.then((d) => (answered = d));
      await until(`round ${round}: the holder to take the refresh lock`, async () => {
        if (answered !== undefined) throw new Error(`round ${round}: the holder answered before the kill: ${JSON.stringify(answered).slice(0, 300)}`);
        return (await lockRows(c.schema)).some((r) => r.name === `refresh:${name}`);
      });
      await until("the holder's refresh to reach the emulator", async () => ((await c.emu.control.call('GET', '/_emulator/faults')).faults as unknown[]).length === 0);

      holder.proc.kill('SIGKILL');
      const killedAt = Date.now();
      assert.equal(await holder.exited, 'SIGKILL');
      assert.equal((await doomed).status, -1, 'the killed instance never answered');
      const r = await httpGetJson(`${other.url}/api/v1/connections/${name}/token`, auth, agent);
      const took = Date.now() - killedAt;
      assert.equal(r.status, 200, `round ${round}: the surviving instance answered ${JSON.stringify(r.body).slice(0, 300)}`);
      assert.ok(took < LOCK_TTL_MS, `round ${round}: refreshed ${took} ms after the kill, within the lock ttl (${LOCK_TTL_MS} ms)`);
      takeovers.push(took);
      const check = await c.emu.rpc('check/user', { query: 'x' }, r.body.access_token);
      assert.equal(check.status, 200, `round ${round}: the new token is valid`);
      const stored = await c.store.getConnection(name);
      assert.equal(stored?.accessToken, r.body.access_token);
      assert.equal(stored?.refreshToken, original.get(name), `round ${round}: the refresh token is intact`);

      // Keep three instances: the killed one is replaced.
      live = [...live.filter((i) => i !== holder), await c.startInstance()];
    }

    // Nothing lost or corrupted: every connection decrypts, keeps its refresh token, is active, and no lock is left.
    for (const [name, refreshToken] of original) {
      const conn = await c.store.getConnection(name);
      assert.equal(conn?.refreshToken, refreshToken, `${name} keeps its refresh token`);
      assert.equal(conn?.state, 'active');
      assert.ok(conn!.accessTokenExpiresAt! > Date.now(), `${name} holds a fresh token`);
    }
    assert.deepEqual((await lockRows(c.schema)).filter((r) => r.name.startsWith('refresh:')), [], 'no refresh lock is left behind');
    const sorted = [...takeovers].sort((a, b) => a - b);
    console.log(JSON.stringify({ test: 'kill-holder', rounds: ROUNDS, takeover_ms_median: sorted[ROUNDS >> 1], takeover_ms_max: sorted[ROUNDS - 1] }));
  } finally {
    agent.destroy();
    await c.emu.control.clearFaults().catch(() => undefined);
    await c.close();
  }
});
