/**
 * Webhooks end to end (docs/webhooks.md): the admin API, signed deliveries to a receiver on 127.0.0.1:0, retries with
 * back-off after 500s and timeouts (driven by the injected timers, no sleeps), redirects refused, the delivery
 * log, and deliveries that survive a restart.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyWebhookSignature, webhookSignatureProblem } from '../../src/server/webhooks/signing.js';
import { webhookService } from '../../src/server/webhooks/service.js';
import { makeRig, startReceiver, type Instance, type Receiver, type Rig } from './webhooks-rig.js';

let rig: Rig;
let inst: Instance;
let admin: string;
let receiver: Receiver;

before(async () => {
  rig = await makeRig();
  inst = await rig.instance();
  admin = await inst.key(['admin'], '*');
  receiver = await startReceiver();
});
after(async () => {
  await receiver.close();
  await rig.close();
});

async function createEndpoint(i: Instance, url: string, events?: string[]): Promise<{ id: string; secret: string }> {
  const res = await i.call('POST', '/api/v1/webhooks', { key: admin, body: { url, ...(events ? { events } : {}), description: 'test receiver' } });
  const text = await res.text();
  assert.equal(res.status, 201, text);
  const body = JSON.parse(text) as { webhook: { id: string }; secret: string };
  return { id: body.webhook.id, secret: body.secret };
}

async function deliveryLog(i: Instance, endpoint: string, delivery: string): Promise<any> {
  const res = await i.call('GET', `/api/v1/webhooks/${endpoint}/deliveries/${delivery}`, { key: admin });
  assert.equal(res.status, 200);
  return ((await res.json()) as any).delivery;
}

describe('admin API', () => {
  test('create shows the secret once; list and get never do; only a global admin key may manage webhooks', async () => {
    const { id, secret } = await createEndpoint(inst, receiver.url, ['connection.created', 'connection.revoked']);
    assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
    const list = await (await inst.call('GET', '/api/v1/webhooks', { key: admin })).text();
    assert.ok(list.includes(id));
    assert.ok(!list.includes(secret), 'the list never shows the secret');
    const one = await (await inst.call('GET', `/api/v1/webhooks/${id}`, { key: admin })).json() as any;
    assert.deepEqual(one.webhook.events, ['connection.created', 'connection.revoked']);
    assert.equal(JSON.stringify(one).includes(secret), false);
    // Stored encrypted: the raw database never holds the secret.
    const audit = await inst.serverStore.listAudit({ action: 'webhook.created' });
    assert.equal(audit[0]?.target, id);

    const reader = await inst.key(['token:read', 'proxy'], '*');
    assert.equal((await inst.call('GET', '/api/v1/webhooks', { key: reader })).status, 403);
    const scopedAdmin = await inst.key(['admin'], ['alpha']);
    const denied = await inst.call('POST', '/api/v1/webhooks', { key: scopedAdmin, body: { url: receiver.url } });
    assert.equal(denied.status, 403);
    assert.equal(((await denied.json()) as any).error.code, 'DROPKEY_FORBIDDEN');
    assert.equal((await inst.call('GET', '/api/v1/webhooks')).status, 401);

    const del = await inst.call('DELETE', `/api/v1/webhooks/${id}`, { key: admin });
    assert.equal(del.status, 200);
    assert.equal((await inst.call('GET', `/api/v1/webhooks/${id}`, { key: admin })).status, 404);
  });

  test('bad input is refused with what to do', async () => {
    const cases: [unknown, RegExp][] = [
      [{ url: 'ftp://example.com/x' }, /https:\/\//],
      [{ url: 'not a url' }, /absolute URL/],
      [{ url: 'https://user:pw@example.com/' }, /user name or password/],
      [{ url: 'https://example.com/', events: ['connection.exploded'] }, /Unknown event type/],
      [{ url: 'https://example.com/', events: [] }, /at least one event type/],
    ];
    for (const [body, message] of cases) {
      const res = await inst.call('POST', '/api/v1/webhooks', { key: admin, body });
      assert.equal(res.status, 400, JSON.stringify(body));
      const err = ((await res.json()) as any).error;
      assert.equal(err.code, 'DROPKEY_BAD_INPUT');
      assert.match(err.message, message);
    }
    const notJson = await inst.call('POST', '/api/v1/webhooks', { key: admin, body: 'url=x', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(notJson.status, 400);
  });
});

describe('delivery', () => {
  test('test send: signed JSON with the event id; the receiver can verify it with the secret', async () => {
    const { id, secret } = await createEndpoint(inst, receiver.url);
    const before = receiver.received.length;
    const res = await inst.call('POST', `/api/v1/webhooks/${id}/test`, { key: admin });
    assert.equal(res.status, 200);
    const d = ((await res.json()) as any).delivery;
    assert.equal(d.status, 'succeeded');
    assert.equal(d.attempts, 1);
    assert.equal(d.last_status_code, 200);
    const got = receiver.received[before]!;
    assert.equal(got.method, 'POST');
    assert.equal(got.headers['content-type'], 'application/json');
    assert.equal(got.headers['dropkey-event-id'], d.event_id);
    assert.equal(got.headers['dropkey-event-type'], 'webhook.test');
    const sig = String(got.headers['dropkey-signature']);
    assert.equal(verifyWebhookSignature(secret, sig, got.body, rig.timers.now()), true);
    assert.equal(webhookSignatureProblem('whsec_wrong', sig, got.body, rig.timers.now()), 'signature_mismatch');
    assert.equal(webhookSignatureProblem(secret, sig, got.body.replace('webhook.test', 'webhook.tesT'), rig.timers.now()), 'signature_mismatch');
    assert.equal(webhookSignatureProblem(secret, sig, got.body, rig.timers.now() + 3_600_000), 'timestamp_out_of_tolerance');
    const event = JSON.parse(got.body);
    assert.equal(event.id, d.event_id);
    assert.equal(event.type, 'webhook.test');
    assert.equal(event.created_at, new Date(rig.timers.now()).toISOString());
    await inst.call('DELETE', `/api/v1/webhooks/${id}`, { key: admin });
  });

  test('500s are retried after 1 min and 5 min on the injected clock; the log keeps every attempt', async () => {
    const { id, secret } = await createEndpoint(inst, receiver.url, ['connection.revoked']);
    receiver.script.push(500, 503);
    const first = receiver.received.length;
    const attempt1 = inst.nextAttempts(1);
    inst.app.services.events.emit({ type: 'connection.revoked', at: rig.timers.now(), connection: 'c1', data: { app: 'main', reason: 'test' } });
    const [o1] = await attempt1;
    assert.equal(o1!.result, 'retry');
    assert.equal(o1!.statusCode, 500);
    assert.equal(o1!.nextAttemptAt, rig.timers.now() + 60_000);
    const deliveryId = inst.attempts.at(-1)!.delivery.id;

    // Nothing happens before the back-off is over.
    rig.timers.advance(59_000);
    await webhookService(inst.app.services).worker.idle();
    assert.equal(receiver.received.length, first + 1);

    const attempt2 = inst.nextAttempts(1);
    rig.timers.advance(1_000);
    const [o2] = await attempt2;
    assert.equal(o2!.statusCode, 503);
    assert.equal(o2!.nextAttemptAt, rig.timers.now() + 300_000);

    const attempt3 = inst.nextAttempts(1);
    rig.timers.advance(300_000);
    const [o3] = await attempt3;
    assert.equal(o3!.result, 'succeeded');

    const got = receiver.received.slice(first);
    assert.equal(got.length, 3);
    assert.equal(new Set(got.map((g) => g.headers['dropkey-event-id'])).size, 1, 'one event id across attempts');
    assert.deepEqual(got.map((g) => g.headers['dropkey-delivery-attempt']), ['1', '2', '3']);
    assert.equal(new Set(got.map((g) => g.body)).size, 1, 'the same body each time');
    // Each attempt is signed afresh with its own timestamp, and each verifies at its own time.
    const ts = got.map((g) => Number(/t=(\d+)/.exec(String(g.headers['dropkey-signature']))![1]));
    assert.deepEqual([ts[1]! - ts[0]!, ts[2]! - ts[1]!], [60, 300]);
    for (const [k, g] of got.entries()) assert.ok(verifyWebhookSignature(secret, String(g.headers['dropkey-signature']), g.body, ts[k]! * 1000));
    const body = JSON.parse(got[0]!.body);
    assert.deepEqual({ type: body.type, connection: body.connection, data: body.data }, { type: 'connection.revoked', connection: 'c1', data: { app: 'main', reason: 'test' } });

    const log = await deliveryLog(inst, id, deliveryId);
    assert.equal(log.status, 'succeeded');
    assert.equal(log.attempts, 3);
    assert.equal(log.next_attempt_at, null);
    assert.deepEqual(log.attempt_log.map((a: any) => a.status_code), [500, 503, 200]);
    assert.match(log.attempt_log[0].error, /HTTP 500/);
    assert.equal(log.attempt_log[2].error, null);
    for (const a of log.attempt_log) assert.ok(Number.isInteger(a.duration_ms) && a.duration_ms >= 0);
    const metrics = await (await inst.call('GET', '/metrics')).text();
    assert.match(metrics, /^dropkey_webhook_attempts_total\{result="retry"\} [1-9]\d*$/m);
    assert.match(metrics, /^dropkey_connection_events_total\{type="connection.revoked"\} 1$/m);
    const listed = ((await (await inst.call('GET', `/api/v1/webhooks/${id}/deliveries?status=succeeded`, { key: admin })).json()) as any).deliveries;
    assert.ok(listed.some((x: any) => x.id === deliveryId));
    await inst.call('DELETE', `/api/v1/webhooks/${id}`, { key: admin });
  });

  test('a receiver that does not answer times out on the injected clock and is retried', async () => {
    const { id } = await createEndpoint(inst, receiver.url, ['connection.needs_reauth']);
    receiver.script.push('hang');
    const n = receiver.received.length;
    const attempt = inst.nextAttempts(1);
    inst.app.services.events.emit({ type: 'connection.needs_reauth', at: rig.timers.now(), connection: 'slow', data: {} });
    await receiver.waitFor(n + 1);
    // The request is in flight; only the 10 s timeout (injected timers) ends it.
    rig.timers.advance(10_000);
    const [o] = await attempt;
    assert.equal(o!.result, 'retry');
    assert.equal(o!.statusCode, null);
    assert.match(o!.error!, /did not answer within 10 s/);
    receiver.release();
    const again = inst.nextAttempts(1);
    rig.timers.advance(60_000);
    assert.equal((await again)[0]!.result, 'succeeded');
    await inst.call('DELETE', `/api/v1/webhooks/${id}`, { key: admin });
  });

  test('redirects are never followed (to another host or at all)', async () => {
    const elsewhere = await startReceiver();
    try {
      const { id } = await createEndpoint(inst, receiver.url);
      receiver.script.push({ redirect: elsewhere.url });
      const res = await inst.call('POST', `/api/v1/webhooks/${id}/test`, { key: admin });
      const d = ((await res.json()) as any).delivery;
      assert.equal(d.status, 'pending');
      assert.equal(d.last_status_code, 302);
      assert.match(d.last_error, /redirect.*does not follow/);
      assert.equal(elsewhere.received.length, 0);
      await inst.call('DELETE', `/api/v1/webhooks/${id}`, { key: admin });
    } finally {
      await elsewhere.close();
    }
  });

  test('attempts are bounded: after the last one the delivery is failed; it can be redelivered by hand', async () => {
    const short = await rig.instance({ webhooks: { retryScheduleMs: [1_000, 2_000] } });
    try {
      const { id } = await createEndpoint(short, receiver.url, ['connection.refresh_failed']);
      receiver.script.push(500, 500, 500);
      const three = short.nextAttempts(3);
      short.app.services.events.emit({ type: 'connection.refresh_failed', at: rig.timers.now(), connection: 'x', data: {} });
      await short.nextAttempts(1);
      await short.settle();
      rig.timers.advance(1_000);
      await short.settle();
      rig.timers.advance(2_000);
      const outcomes = await three;
      assert.deepEqual(outcomes.map((o) => o.result), ['retry', 'retry', 'failed']);
      const d = short.attempts.at(-1)!.delivery;
      const log = await deliveryLog(short, id, d.id);
      assert.equal(log.status, 'failed');
      assert.equal(log.attempts, 3);
      const redo = short.nextAttempts(1);
      const res = await short.call('POST', `/api/v1/webhooks/${id}/deliveries/${d.id}/redeliver`, { key: admin });
      assert.equal(res.status, 202);
      assert.equal((await redo)[0]!.result, 'succeeded');
      assert.equal((await deliveryLog(short, id, d.id)).attempts, 4);
      await short.call('DELETE', `/api/v1/webhooks/${id}`, { key: admin });
    } finally {
      await short.close();
    }
  });

  test('pending deliveries survive a restart and are sent by the next instance', async () => {
    const first = await rig.instance();
    const { id, secret } = await createEndpoint(first, receiver.url, ['connection.created']);
    receiver.script.push(500);
    const n = receiver.received.length;
    const attempt = first.nextAttempts(1);
    first.app.services.events.emit({ type: 'connection.created', at: rig.timers.now(), connection: 'persist', data: { app: 'main' } });
    assert.equal((await attempt)[0]!.result, 'retry');
    const deliveryId = first.attempts.at(-1)!.delivery.id;
    await first.close();
    // Also stop the shared instance's worker from picking it up: this test is about the new process.
    await webhookService(inst.app.services).worker.stop();

    const second = await rig.instance();
    try {
      const retried = second.nextAttempts(1);
      await second.settle();
      rig.timers.advance(60_000);
      const [o] = await retried;
      assert.equal(o!.result, 'succeeded');
      assert.equal(second.attempts.at(-1)!.delivery.id, deliveryId);
      const got = receiver.received.slice(n);
      assert.equal(got.length, 2);
      assert.equal(got[0]!.headers['dropkey-event-id'], got[1]!.headers['dropkey-event-id']);
      assert.ok(verifyWebhookSignature(secret, String(got[1]!.headers['dropkey-signature']), got[1]!.body, rig.timers.now()), 'secret decrypted by the new process');
      const log = await deliveryLog(second, id, deliveryId);
      assert.deepEqual(log.attempt_log.map((a: any) => a.status_code), [500, 200]);
      await second.call('DELETE', `/api/v1/webhooks/${id}`, { key: admin });
    } finally {
      await second.close();
    }
  });
});
