/**
 * Background work (docs/webhooks.md) end to end against the emulator, on injected timers that are also the
 * emulator's and the facade's clock: the scheduler runs a job once across two app instances sharing one store,
 * proactive refresh refreshes an expiring connection exactly once, a revoked refresh token turns into
 * needs_reauth with one event (delivered as a signed webhook), health checks mark revoked connections and leave
 * connections alone on transient failures, and the events of the server's real connect flow reach webhooks.
 */
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JOB_NAMES } from '../../src/server/jobs/index.js';
import { Scheduler } from '../../src/server/jobs/scheduler.js';
import { verifyWebhookSignature } from '../../src/server/webhooks/signing.js';
import { driveConsent } from '../helpers/consent.js';
import { makeRig, PUBLIC_URL, startReceiver, type Instance, type Receiver, type Rig } from './webhooks-rig.js';

const MIN = 60_000;
let rig: Rig | undefined;
let receiver: Receiver | undefined;

afterEach(async () => {
  await receiver?.close();
  await rig?.close();
  receiver = undefined;
  rig = undefined;
});
after(async () => {
  await receiver?.close();
  await rig?.close();
});

/** A receiver subscribed to every event on `inst`, with its secret. */
async function subscribe(inst: Instance): Promise<{ receiver: Receiver; secret: string }> {
  receiver = await startReceiver();
  const admin = await inst.key(['admin'], '*');
  const res = await inst.call('POST', '/api/v1/webhooks', { key: admin, body: { url: receiver.url } });
  assert.equal(res.status, 201);
  return { receiver, secret: ((await res.json()) as { secret: string }).secret };
}

function resultsOf(inst: Instance, job: string): string[] {
  return inst.jobResults.filter((r) => r.job === job).map((r) => r.result);
}

describe('scheduler', () => {
  test('two instances on one store: the refresh job runs once per period and refreshes an expiring token exactly once', async () => {
    rig = await makeRig();
    const a = await rig.instance({ start: false });
    const b = await rig.instance({ start: false });
    await rig.connection(a.dk, 'shared');
    const before = await a.dk.get('shared');
    // The emulator's clock moves with the timers: 3 h 55 min later the 4 h token is inside the 10 min margin.
    rig.timers.advance(235 * MIN);
    const grants = await rig.refreshGrants();
    a.app.start();
    b.app.start();
    // Both instances' first runs fall due at the same instant (random() = 0.5 → 15 s).
    rig.timers.advance(15_000);
    await a.settle();
    await b.settle();
    const first = [...resultsOf(a, JOB_NAMES.refresh), ...resultsOf(b, JOB_NAMES.refresh)].sort();
    assert.equal(first.length, 2);
    assert.equal(first.filter((r) => r === 'ran').length, 1, `one instance ran it: ${first.join(', ')}`);
    assert.ok(first.every((r) => r === 'ran' || r === 'locked' || r === 'recent'), first.join(', '));
    assert.equal((await rig.refreshGrants()) - grants, 1, 'exactly one refresh at the emulator');
    const after1 = await b.dk.get('shared');
    assert.ok(after1.expiresAt! > before.expiresAt!, 'a new token with a later expiry');
    assert.equal(after1.state, 'active');

    // The next period: again one run in all, and the now fresh token is left alone.
    rig.timers.advance(MIN + 6_000);
    await a.settle();
    await b.settle();
    const runs = (await a.webhookStore.listJobRuns()).find((r) => r.name === JOB_NAMES.refresh)!;
    assert.equal(runs.runs, 2, 'two periods, two runs across both instances');
    assert.equal(runs.lastOutcome, 'ok');
    assert.equal((await rig.refreshGrants()) - grants, 1, 'still one refresh');
    // Sequentially (no lock contention), another instance's run this period still counts: b skips.
    assert.equal(await b.app.services.scheduler!.runNow(JOB_NAMES.refresh), 'recent');
    assert.equal(await a.app.services.scheduler!.runNow(JOB_NAMES.refresh), 'recent');
    const m = a.app.services.metrics.registry.render() + b.app.services.metrics.registry.render();
    assert.equal([...m.matchAll(/^dropkey_job_runs_total\{job="connections.refresh",result="ran"\} (\d+)$/gm)].reduce((n, x) => n + Number(x[1]), 0), 2);
    const listed = (await (await a.call('GET', '/api/v1/jobs', { key: await a.key(['admin'], '*') })).json()) as any;
    assert.equal(listed.jobs.find((j: any) => j.name === JOB_NAMES.refresh).runs, 2);
  });

  test('stop() aborts the running job\'s signal and waits for it to finish', async () => {
    rig = await makeRig();
    const inst = await rig.instance({ start: false });
    const scheduler = new Scheduler({ locks: inst.store, runs: inst.webhookStore, timers: rig.timers, logger: console as any, random: () => 0 });
    let release!: () => void;
    let sawAbort = false;
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    scheduler.add({
      name: 'slow',
      intervalMs: MIN,
      run: async ({ signal }) => {
        started();
        await new Promise<void>((r) => (release = r));
        sawAbort = signal.aborted;
      },
    });
    scheduler.start();
    rig.timers.advance(0);
    await running;
    let stopped = false;
    const stopping = scheduler.stop().then(() => (stopped = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(stopped, false, 'stop waits for the in-flight run');
    release();
    await stopping;
    assert.equal(sawAbort, true);
    assert.equal(rig.timers.pending, 0, 'no timer left behind');
    assert.equal((await inst.webhookStore.listJobRuns()).find((r) => r.name === 'slow')?.lastOutcome, 'ok');
  });
});

describe('proactive refresh', () => {
  test('many connections expiring together: each is refreshed once in one run; fresh ones are left alone', async () => {
    rig = await makeRig();
    const inst = await rig.instance({ start: false });
    for (let i = 0; i < 6; i++) await rig.connection(inst.dk, `many${i}`);
    rig.timers.advance(235 * MIN);
    await rig.connection(inst.dk, 'fresh');
    const grants = await rig.refreshGrants();
    inst.app.start();
    rig.timers.advance(15_000);
    await inst.settle();
    assert.deepEqual(resultsOf(inst, JOB_NAMES.refresh), ['ran']);
    assert.equal((await rig.refreshGrants()) - grants, 6);
    for (const c of await inst.dk.list()) assert.ok(c.expiresAt! - rig.timers.now() > 3 * 60 * MIN, c.name);
  });
});

describe('proactive refresh failures', () => {
  test('a refresh token revoked at Dropbox → needs_reauth, one event, delivered as a signed webhook', async () => {
    rig = await makeRig();
    const inst = await rig.instance();
    const { receiver: rx, secret } = await subscribe(inst);
    const c = await rig.connection(inst.dk, 'doomed');
    // The account owner unlinks the app: revoking the access token disables its refresh token too (Dropbox docs: auth/token/revoke).
    assert.equal((await rig.emu.rpc('auth/token/revoke', undefined, c.accessToken)).status, 200);
    rig.timers.advance(235 * MIN);
    const scheduler = inst.app.services.scheduler!;
    assert.equal(await scheduler.runNow(JOB_NAMES.refresh, { force: true }), 'ran');
    const info = await inst.dk.get('doomed');
    assert.equal(info.state, 'needs_reauth');
    assert.match(info.lastError!, /rejected the refresh token/);
    const events = inst.events.filter((e) => e.connection === 'doomed');
    assert.deepEqual(events.map((e) => e.type), ['connection.needs_reauth']);
    assert.equal(events[0]!.data['reason'], 'invalid_grant');
    assert.equal(events[0]!.data['detected_by'], 'proactive_refresh');

    const got = await rx.waitFor(1);
    const body = JSON.parse(got.body);
    assert.equal(body.type, 'connection.needs_reauth');
    assert.equal(body.connection, 'doomed');
    assert.equal(body.data.account_id, c.accountId);
    assert.ok(verifyWebhookSignature(secret, String(got.headers['dropkey-signature']), got.body, rig.timers.now()));
    assert.ok(!got.body.includes(c.refreshToken) && !got.body.includes(c.accessToken), 'no token in the event');

    // Already broken: later runs skip it, and no second event.
    assert.equal(await scheduler.runNow(JOB_NAMES.refresh, { force: true }), 'ran');
    assert.equal(inst.events.filter((e) => e.connection === 'doomed').length, 1);
    // The token API now answers 409 with the reconnect URL.
    const res = await inst.call('GET', '/api/v1/connections/doomed/token', { key: await inst.key(['token:read'], '*') });
    assert.equal(res.status, 409);
    assert.equal(((await res.json()) as any).error.code, 'DROPKEY_REAUTH_REQUIRED');
  });

  test('Dropbox down during a proactive refresh: refresh_failed once per failure streak, state stays active', async () => {
    rig = await makeRig();
    const inst = await rig.instance();
    await rig.connection(inst.dk, 'flaky');
    rig.timers.advance(235 * MIN);
    await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 20 });
    const scheduler = inst.app.services.scheduler!;
    await scheduler.runNow(JOB_NAMES.refresh, { force: true });
    await scheduler.runNow(JOB_NAMES.refresh, { force: true });
    const events = inst.events.filter((e) => e.connection === 'flaky');
    assert.deepEqual(events.map((e) => e.type), ['connection.refresh_failed']);
    assert.equal(events[0]!.data['reason'], 'DROPKEY_DROPBOX_UNAVAILABLE');
    assert.equal((await inst.dk.get('flaky')).state, 'active');
    await rig.emu.control.clearFaults();
    const grants = await rig.refreshGrants();
    await scheduler.runNow(JOB_NAMES.refresh, { force: true });
    assert.equal((await rig.refreshGrants()) - grants, 1, 'refreshed once Dropbox is back');
    assert.ok((await inst.dk.get('flaky')).expiresAt! > rig.timers.now() + 3 * 60 * MIN);
  });
});

describe('refresh failures on request paths', () => {
  test('a token request that finds the refresh token revoked → needs_reauth once; the refresh route reports outages', async () => {
    rig = await makeRig();
    const inst = await rig.instance({ start: false });
    const reader = await inst.key(['token:read', 'admin'], '*');
    const c = await rig.connection(inst.dk, 'req');
    await rig.emu.rpc('auth/token/revoke', undefined, c.accessToken);
    rig.timers.advance(236 * MIN); // inside the facade's 5 min margin: the token request refreshes
    const first = await inst.call('GET', '/api/v1/connections/req/token', { key: reader });
    assert.equal(first.status, 409);
    const second = await inst.call('GET', '/api/v1/connections/req/token', { key: reader });
    assert.equal(second.status, 409);
    const ev = inst.events.filter((e) => e.connection === 'req');
    assert.deepEqual(ev.map((e) => [e.type, e.data['detected_by']]), [['connection.needs_reauth', 'token_request']]);

    // An outage while the token has expired: the refresh route fails and says so; the token requests that follow
    // fail the same way within the quiet period and add no event.
    await rig.connection(inst.dk, 'req2');
    rig.timers.advance(241 * MIN);
    await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 10 });
    const refresh = await inst.call('POST', '/api/v1/connections/req2/refresh', { key: reader });
    assert.equal(refresh.status, 503);
    assert.equal((await inst.call('GET', '/api/v1/connections/req2/token', { key: reader })).status, 503);
    const ev2 = inst.events.filter((e) => e.connection === 'req2');
    assert.deepEqual(ev2.map((e) => [e.type, e.data['detected_by']]), [['connection.refresh_failed', 'refresh_request']]);
    assert.equal((await inst.dk.get('req2')).state, 'active');
  });
});

describe('health checks', () => {
  test('a token Dropbox rejects even after a refresh → revoked, in plain words, with an event', async () => {
    rig = await makeRig();
    const inst = await rig.instance();
    await rig.connection(inst.dk, 'hc');
    const grants = await rig.refreshGrants();
    // check/user refuses the token twice: before and after the forced refresh.
    await rig.emu.control.fault({ route: 'check/user', status: 401, count: 2 });
    const scheduler = inst.app.services.scheduler!;
    assert.equal(await scheduler.runNow(JOB_NAMES.health, { force: true }), 'ran');
    assert.equal((await rig.refreshGrants()) - grants, 1, 'one forced refresh before giving up');
    const info = await inst.dk.get('hc');
    assert.equal(info.state, 'revoked');
    assert.match(info.lastError!, /no longer accepts this connection/);
    const ev = inst.events.filter((e) => e.connection === 'hc');
    assert.deepEqual(ev.map((e) => e.type), ['connection.revoked']);
    assert.equal(ev[0]!.data['reason'], 'invalid_access_token');
  });

  test('a rejected token whose refresh works is healthy; transient failures change nothing', async () => {
    rig = await makeRig();
    const inst = await rig.instance();
    await rig.connection(inst.dk, 'hc2');
    const scheduler = inst.app.services.scheduler!;
    await rig.emu.control.fault({ route: 'check/user', status: 401, count: 1 });
    await scheduler.runNow(JOB_NAMES.health, { force: true });
    assert.equal((await inst.dk.get('hc2')).state, 'active');
    await rig.emu.control.fault({ route: 'check/user', status: 503, count: 50 });
    await scheduler.runNow(JOB_NAMES.health, { force: true });
    const info = await inst.dk.get('hc2');
    assert.equal(info.state, 'active');
    assert.equal(inst.events.filter((e) => e.connection === 'hc2').length, 0);
  });

  test('an imported access token that Dropbox rejects → revoked without a refresh attempt', async () => {
    rig = await makeRig();
    const inst = await rig.instance();
    const a = await rig.dropboxApp(inst.dk, 'main');
    const account = await rig.emu.control.createAccount();
    const grant = await rig.emu.control.grant({ app: a.key, account: account.account_id, token_access_type: 'online' });
    await inst.dk.import({ connection: 'bare', app: 'main', accessToken: grant.access_token });
    assert.equal((await inst.dk.get('bare')).refreshable, false);
    await rig.emu.rpc('auth/token/revoke', undefined, grant.access_token);
    const grants = await rig.refreshGrants();
    await inst.app.services.scheduler!.runNow(JOB_NAMES.health, { force: true });
    assert.equal((await rig.refreshGrants()) - grants, 0);
    const info = await inst.dk.get('bare');
    assert.equal(info.state, 'revoked');
    assert.deepEqual(inst.events.filter((e) => e.connection === 'bare').map((e) => e.type), ['connection.revoked']);
  });

  test('a revoked grant found by the health check → needs_reauth event', async () => {
    rig = await makeRig();
    const inst = await rig.instance();
    const c = await rig.connection(inst.dk, 'gone');
    await rig.emu.rpc('auth/token/revoke', undefined, c.accessToken);
    await inst.app.services.scheduler!.runNow(JOB_NAMES.health, { force: true });
    assert.equal((await inst.dk.get('gone')).state, 'needs_reauth');
    const ev = inst.events.filter((e) => e.connection === 'gone');
    assert.deepEqual(ev.map((e) => [e.type, e.data['detected_by']]), [['connection.needs_reauth', 'health_check']]);
  });
});

describe('events from the server\'s own flows', () => {
  test('connect link → connection.created, again → connection.reconnected, API revoke → connection.revoked, all delivered signed', async () => {
    rig = await makeRig();
    const inst = await rig.instance();
    const { receiver: rx, secret } = await subscribe(inst);
    await rig.dropboxApp(inst.dk, 'main');
    const account = await rig.emu.control.createAccount({ email: 'owner@example.com' });
    const admin = await inst.key(['admin'], '*');
    const connectThroughLink = async () => {
      const link = (await (await inst.call('POST', '/api/v1/connect-links', { key: admin, body: { connection: 'owned', app: 'main' } })).json()) as any;
      const path = new URL(link.url).pathname;
      const go = await inst.call('POST', path);
      assert.equal(go.status, 303);
      const cookie = go.headers.getSetCookie().find((x) => x.startsWith('dropkey_oauth='))!.split(';')[0]!;
      const consent = await driveConsent(go.headers.get('location')!, { account: 'owner@example.com' });
      const cb = new URL(consent.location!);
      assert.equal(cb.origin, PUBLIC_URL);
      const done = await inst.call('GET', `${cb.pathname}${cb.search}`, { headers: { Cookie: cookie } });
      assert.equal(done.status, 200);
    };
    await connectThroughLink();
    const got = await rx.waitFor(1);
    const body = JSON.parse(got.body);
    assert.equal(body.type, 'connection.created');
    assert.equal(body.connection, 'owned');
    assert.equal(body.data.account_id, account.account_id);
    assert.equal(body.data.email, 'owner@example.com');
    assert.ok(verifyWebhookSignature(secret, String(got.headers['dropkey-signature']), got.body, rig.timers.now()));

    // The owner connects the same name again, then an admin revokes it through the API.
    await connectThroughLink();
    const again = JSON.parse((await rx.waitFor(2)).body);
    assert.deepEqual([again.type, again.connection, again.data.account_id], ['connection.reconnected', 'owned', account.account_id]);
    assert.equal((await inst.call('DELETE', '/api/v1/connections/owned', { key: admin })).status, 200);
    const revoked = await rx.waitFor(3);
    const rb = JSON.parse(revoked.body);
    assert.deepEqual([rb.type, rb.connection, rb.data.revoked_at_dropbox], ['connection.revoked', 'owned', true]);
    assert.ok(verifyWebhookSignature(secret, String(revoked.headers['dropkey-signature']), revoked.body, rig.timers.now()));
    assert.equal(new Set(rx.received.map((x) => x.headers['dropkey-event-id'])).size, 3, 'three distinct events');
  });
});
