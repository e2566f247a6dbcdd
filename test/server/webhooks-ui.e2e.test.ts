/**
 * The webhooks page of the web UI (docs/webhooks.md "a delivery log in the UI"), driven like a browser without
 * JavaScript: add an endpoint (secret shown once), send a test event, read the delivery log with each attempt,
 * redeliver, delete. CSRF and sign-in are enforced like every UI page.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { hashPassword } from '../../src/server/security/secrets.js';
import { verifyWebhookSignature } from '../../src/server/webhooks/signing.js';
import { csrfOf, textOf, UiClient } from './ui-client.js';
import type { ServerRig } from './rig.js';
import { makeRig, startReceiver, type Instance, type Receiver, type Rig } from './webhooks-rig.js';

const EMAIL = 'admin@example.com';
const PASSWORD = 'correct horse battery staple';
let rig: Rig;
let inst: Instance;
let receiver: Receiver;
let browser: UiClient;

before(async () => {
  rig = await makeRig();
  inst = await rig.instance({ ui: true });
  receiver = await startReceiver();
  await inst.serverStore.createAdmin({ email: EMAIL, passwordHash: await hashPassword(PASSWORD, randomBytes) }, rig.timers.now());
  browser = new UiClient(inst as unknown as ServerRig);
  const signin = await browser.page('/signin');
  const res = await browser.post('/signin', { _csrf: csrfOf(signin), email: EMAIL, password: PASSWORD });
  assert.equal(res.status, 303);
});
after(async () => {
  await receiver.close();
  await rig.close();
});

test('signed out: the page sends you to sign in; a post without CSRF is refused', async () => {
  const stranger = new UiClient(inst as unknown as ServerRig);
  const res = await stranger.get('/webhooks');
  assert.equal(res.status, 303);
  assert.match(res.headers.get('location')!, /^\/signin\?next=%2Fwebhooks/);
  const forged = await browser.post('/webhooks', { _csrf: 'x'.repeat(43), url: receiver.url, events: '*' });
  assert.equal(forged.status, 403);
  assert.equal((await inst.webhookStore.listEndpoints()).length, 0);
});

test('add (secret once) → test send → delivery log with attempts → redeliver → delete', async () => {
  const list = await browser.page('/webhooks');
  assert.match(textOf(list), /No webhooks yet/);
  assert.match(list, /<a href="\/webhooks" aria-current="page">Webhooks<\/a>/, 'in the navigation');
  const bad = await browser.post('/webhooks', { _csrf: csrfOf(list), url: 'ftp://nope', events: '*' });
  assert.equal(bad.status, 400);
  assert.match(textOf(await bad.text()), /No webhook was added: A webhook URL must start with https:\/\//);

  const created = await browser.post('/webhooks', { _csrf: csrfOf(list), url: receiver.url, events: '*', description: 'ops pager' });
  const html = await created.text();
  assert.equal(created.status, 201, html.slice(0, 300));
  const secret = /id="new-secret"[^>]*value="(whsec_[A-Za-z0-9_-]+)"/.exec(html)?.[1];
  assert.ok(secret, 'the secret is shown on the answer to the creating post');
  assert.equal(created.headers.get('cache-control'), 'no-store');
  const [endpoint] = await inst.webhookStore.listEndpoints();
  assert.ok(endpoint);
  const again = await browser.page('/webhooks');
  assert.ok(!again.includes(secret), 'never shown again');
  assert.ok(again.includes(`/webhooks/${endpoint.id}`));

  // A failing test send shows the error and is logged; the retry delivers it.
  receiver.script.push(500);
  const detail = await browser.page(`/webhooks/${endpoint.id}`);
  const tested = await browser.post(`/webhooks/${endpoint.id}/test`, { _csrf: csrfOf(detail) });
  assert.equal(tested.status, 200);
  const testedText = textOf(await tested.text());
  assert.match(testedText, /The test event was not delivered: The receiver answered HTTP 500\. It will be retried\./);
  assert.match(testedText, /webhook\.test/);
  const retried = inst.nextAttempts(1);
  await inst.settle();
  rig.timers.advance(60_000);
  assert.equal((await retried)[0]!.result, 'succeeded');
  const log = textOf(await browser.page(`/webhooks/${endpoint.id}`));
  assert.match(log, /delivered/);
  assert.match(log, /1 .* 500 .* ms The receiver answered HTTP 500\. 2 .* 200 .* ms/);
  const got = receiver.received.at(-1)!;
  assert.ok(verifyWebhookSignature(secret, String(got.headers['dropkey-signature']), got.body, rig.timers.now()));

  const deliveries = await inst.webhookStore.listDeliveries({ endpointId: endpoint.id });
  const d = deliveries[0]!;
  const page = await browser.page(`/webhooks/${endpoint.id}`);
  const redo = inst.nextAttempts(1);
  const res = await browser.post(`/webhooks/${endpoint.id}/deliveries/${d.id}/redeliver`, { _csrf: csrfOf(page) });
  assert.equal(res.status, 303);
  assert.equal((await redo)[0]!.result, 'succeeded');
  assert.equal((await inst.webhookStore.getDelivery(d.id))!.attempts, 3);

  const del = await browser.post(`/webhooks/${endpoint.id}/delete`, { _csrf: csrfOf(page) });
  assert.equal(del.status, 303);
  assert.equal(del.headers.get('location'), '/webhooks?deleted=1');
  assert.equal((await inst.webhookStore.listEndpoints()).length, 0);
  const audit = (await inst.serverStore.listAudit({})).map((e) => `${e.actor} ${e.action}`);
  assert.ok(audit.includes(`admin:${EMAIL} webhook.created`) && audit.includes(`admin:${EMAIL} webhook.deleted`), audit.join('; '));
});
