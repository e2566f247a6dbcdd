/**
 * docs/deploying.md ("What the cluster guarantees"): the 429 back-off of a connection is shared across instances. Instance A proxies a call and meets
 * a 429 with Retry-After: 2 from the emulator; a call for the same connection sent to instance B afterwards must
 * wait out the same block instead of going to "Dropbox" at once. Checked in the emulator's request log: after the
 * 429, no request for the connection reaches it before the Retry-After moment.
 */
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { test } from 'node:test';
import { withAdmin } from '../../src/store/postgres/test-helpers.test-support.js';
import { skipReason, startCluster } from './rig.js';

const skip = skipReason();
const RETRY_AFTER_S = 2;

function post(url: string, key: string, agent: Agent): Promise<{ status: number; text: string; at: number }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, at: Date.now() }));
    });
    req.on('error', reject);
    req.end('null');
  });
}

test('a 429 met by one instance makes callers on another instance wait out Retry-After', { skip: skip ?? false, timeout: 60_000 }, async () => {
  const c = await startCluster();
  const agent = new Agent({ keepAlive: true });
  try {
    await c.connection('shared');
    const [a, b] = await Promise.all([c.startInstance(), c.startInstance()]);
    const r = await c.cli(['apikey', 'create', '--name', 'proxy', '--permission', 'proxy', '--connection', 'shared']);
    assert.equal(r.code, 0, r.stderr);
    const key = r.stdout.trim();
    const route = 'users/get_current_account';
    // Warm both instances (token refreshed once, cached) so the only upstream calls left are the proxied ones.
    assert.equal((await post(`${a!.url}/proxy/shared/2/${route}`, key, agent)).status, 200);
    assert.equal((await post(`${b!.url}/proxy/shared/2/${route}`, key, agent)).status, 200);
    await c.emu.control.clearRequests();

    await c.emu.control.fault({ route, status: 429, retry_after: RETRY_AFTER_S, count: 1 });
    const first = post(`${a!.url}/proxy/shared/2/${route}`, key, agent);
    // Once A has recorded the block (it does so as soon as it reads the 429), ask instance B.
    // The recorded "blocked until" moment (epoch ms on this machine's clock, which the instances share).
    const deadline = Date.now() + 10_000;
    let blockedUntil: number | undefined;
    while (blockedUntil === undefined) {
      const rows = await withAdmin((db) => db.query(`SELECT until FROM "${c.schema}".proxy_backoff`).then((r) => r.rows as { until: string }[]).catch(() => []));
      if (rows[0]) blockedUntil = Number(rows[0].until);
      else if (Date.now() > deadline) throw new Error('instance A never recorded the back-off');
      else await new Promise((res) => setTimeout(res, 10));
    }
    const second = await post(`${b!.url}/proxy/shared/2/${route}`, key, agent);
    const firstDone = await first;
    assert.equal(firstDone.status, 200, `A retried after the back-off: ${firstDone.text.slice(0, 200)}`);
    assert.equal(second.status, 200, `B waited, then got through: ${second.text.slice(0, 200)}`);

    const log = (await c.emu.control.requests()).filter((x) => x['route'] === route);
    const limited = log.findIndex((x) => x.status === 429);
    assert.equal(log.filter((x) => x.status === 429).length, 1, 'only one request met the rate limit');
    const limitedAt = Date.parse(String(log[limited]!.time));
    const after = log.slice(limited + 1);
    assert.equal(after.length, 2, "A's retry and B's request");
    for (const x of after) {
      assert.ok(Date.parse(String(x.time)) >= limitedAt + RETRY_AFTER_S * 1000 - 50, `a request went upstream ${Date.parse(String(x.time)) - limitedAt} ms after the 429, inside the ${RETRY_AFTER_S} s back-off`);
    }
    // Against the recorded moment, not the time B was asked: on a loaded machine the poll above may notice the row
    // late, so "B waited about RETRY_AFTER_S from when it was asked" would be a flaky proxy for the same property.
    assert.ok(second.at >= blockedUntil, `B's caller was answered ${blockedUntil - second.at} ms before the shared block ended`);
  } finally {
    agent.destroy();
    await c.close();
  }
});
