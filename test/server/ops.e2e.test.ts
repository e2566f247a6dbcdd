/**
 * OpenAPI completeness, security headers, /healthz /readyz /metrics, first-run setup.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { makeServerRig, type ServerRig } from './rig.js';

let rig: ServerRig;
before(async () => {
  rig = await makeServerRig();
  await rig.connection('alpha');
});
after(async () => rig.close());

describe('OpenAPI', () => {
  test('/api/openapi.json is OpenAPI 3.1 and documents exactly the registered /api/v1 routes', async () => {
    const res = await rig.call('GET', '/api/openapi.json');
    assert.equal(res.status, 200);
    const doc = (await res.json()) as any;
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(doc.servers[0].url, 'http://127.0.0.1:8999/api/v1');
    const registered = new Set<string>();
    for (const r of rig.app.hono.routes) {
      if (!r.path.startsWith('/api/v1/') || r.method === 'ALL') continue;
      registered.add(`${r.method.toLowerCase()} ${r.path.slice('/api/v1'.length).replace(/:([A-Za-z_]+)/g, '{$1}')}`);
    }
    assert.ok(registered.size >= 10, `found ${registered.size} routes`);
    const documented = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(ops)) {
        documented.add(`${method} ${path}`);
        assert.ok(op.operationId && op.summary && op.responses, `${method} ${path} is fully described`);
        for (const p of path.match(/\{(\w+)\}/g) ?? []) {
          assert.ok(op.parameters?.some((x: any) => x.in === 'path' && `{${x.name}}` === p), `${method} ${path} documents ${p}`);
        }
      }
    }
    assert.deepEqual([...registered].sort(), [...documented].sort());
    // Every $ref resolves.
    for (const m of JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)) assert.ok(doc.components.schemas[m[1]!], m[1]);
  });
});

describe('security headers', () => {
  test('every kind of response carries the CSP without inline script and the other headers', async () => {
    const key = await rig.key(['token:read'], '*');
    const responses = [
      await rig.call('GET', '/healthz'),
      await rig.call('GET', '/api/v1/connections/alpha/token', { key }),
      await rig.call('GET', '/api/v1/connections'),
      await rig.call('GET', '/no/such/page'),
      await rig.call('GET', `/connect/${'C'.repeat(43)}`),
      await rig.call('GET', '/oauth/popup.js'),
    ];
    for (const res of responses) {
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'self'/);
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.match(csp, /form-action 'self' http:\/\/127\.0\.0\.1:\d+/, 'the Dropbox (emulator) authorize origin may receive the connect form redirect');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
      assert.equal(res.headers.get('strict-transport-security'), null, 'no HSTS on plain http');
    }
    const page = responses[3]!;
    assert.equal(page.status, 404);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(await page.text(), /Nothing here/);
  });
});

describe('operations', () => {
  test('/healthz and /readyz', async () => {
    assert.deepEqual(await (await rig.call('GET', '/healthz')).json(), { status: 'ok' });
    const ready = await rig.call('GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ok', checks: { server_store: 'ok', store: 'ok' } });
  });

  test('/metrics is Prometheus text with hand-outs by connection, refreshes, upstream latency and HTTP counts', async () => {
    await rig.connection('metered');
    const key = await rig.key(['token:read'], '*');
    for (let i = 0; i < 3; i++) await rig.call('GET', '/api/v1/connections/metered/token', { key });
    const res = await rig.call('GET', '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const lines = text.trimEnd().split('\n');
    for (const line of lines) {
      assert.match(line, /^(# (HELP|TYPE) [a-z0-9_]+ .+|[a-z0-9_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+]+|\+Inf|NaN))$/, line);
    }
    assert.ok(lines.includes('dropkey_token_handouts_total{connection="metered"} 3'), text);
    for (const name of ['dropkey_refreshes_total', 'dropkey_upstream_request_duration_seconds', 'dropkey_upstream_429_total', 'dropkey_proxy_bytes_total']) {
      assert.ok(lines.includes(`# TYPE ${name} ${name.endsWith('seconds') ? 'histogram' : 'counter'}`), name);
    }
    // The import's identity check went upstream: the histogram has observations, buckets are cumulative.
    const buckets = lines.filter((l) => l.startsWith('dropkey_upstream_request_duration_seconds_bucket{host="api"'));
    assert.ok(buckets.length > 1);
    const counts = buckets.map((l) => Number(l.split(' ').pop()));
    assert.deepEqual([...counts].sort((a, b) => a - b), counts);
    assert.ok(/dropkey_http_requests_total\{status="2xx"\} \d+/.test(text));
  });
});

describe('first-run setup', () => {
  test('POST /api/v1/setup creates the first admin once, with the one-time token; bad input is refused', async () => {
    const { ensureSetupToken } = await import('../../src/server/setup.js');
    const url = await ensureSetupToken(rig.app.services);
    assert.ok(url);
    const token = new URL(url).searchParams.get('token')!;
    // Another instance on the same store (or a restart) prints its own URL: the first one keeps working.
    const otherToken = new URL((await ensureSetupToken(rig.app.services))!).searchParams.get('token')!;
    assert.notEqual(otherToken, token);
    let res = await rig.call('POST', '/api/v1/setup', { body: { token: 'wrong', email: 'a@example.com', password: 'correct horse battery' } });
    assert.equal(res.status, 401);
    res = await rig.call('POST', '/api/v1/setup', { body: { token, email: 'a@example.com', password: 'short' } });
    assert.equal(res.status, 400);
    res = await rig.call('POST', '/api/v1/setup', { body: { token, email: 'not-an-email', password: 'correct horse battery' } });
    assert.equal(res.status, 400);
    res = await rig.call('POST', '/api/v1/setup', { body: { token, email: 'Admin@Example.com', password: 'correct horse battery' } });
    assert.equal(res.status, 201, await res.clone().text());
    assert.equal(((await res.json()) as any).admin.email, 'Admin@Example.com');
    res = await rig.call('POST', '/api/v1/setup', { body: { token, email: 'b@example.com', password: 'correct horse battery' } });
    assert.equal(res.status, 409);
    res = await rig.call('POST', '/api/v1/setup', { body: { token: otherToken, email: 'b@example.com', password: 'correct horse battery' } });
    assert.equal(res.status, 409, 'the other instance\'s token is consumed too');
    assert.equal(await rig.serverStore.countAdmins(), 1);
    assert.equal(await ensureSetupToken(rig.app.services), undefined, 'no new setup token once an admin exists');
    const stored = await rig.serverStore.getAdminByEmail('admin@example.com');
    assert.match(stored!.passwordHash, /^scrypt\$32768\$8\$1\$/);
    assert.ok(!rig.logs.join('').includes('correct horse battery'));
  });
});
