import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { generateWebhookSecret, signWebhook, verifyWebhookSignature, webhookSignatureProblem } from './signing.js';

const secret = 'whsec_' + 'k'.repeat(43);
const body = '{"id":"evt_1","type":"connection.created","created_at":"2026-01-01T00:00:00.000Z","connection":"a","data":{}}';
const t = 1_767_225_600; // 2026-01-01T00:00:00Z
const now = t * 1000;

test('the header is t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>, computable with any HMAC', () => {
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  assert.equal(signWebhook(secret, body, t), `t=${t},v1=${expected}`);
  assert.equal(signWebhook(secret, Buffer.from(body), t + 0.9), `t=${t},v1=${expected}`, 'bytes and fractional seconds');
});

test('a good signature verifies, from a string or the raw bytes', () => {
  const h = signWebhook(secret, body, t);
  assert.equal(verifyWebhookSignature(secret, h, body, now), true);
  assert.equal(verifyWebhookSignature(secret, h, Buffer.from(body, 'utf8'), now + 299_000), true);
  assert.equal(webhookSignatureProblem(secret, h, body, now), null);
});

test('a tampered body fails', () => {
  const h = signWebhook(secret, body, t);
  assert.equal(webhookSignatureProblem(secret, h, body.replace('"a"', '"b"'), now), 'signature_mismatch');
  assert.equal(verifyWebhookSignature(secret, h, body + ' ', now), false);
});

test('the wrong secret fails', () => {
  const h = signWebhook('whsec_other', body, t);
  assert.equal(webhookSignatureProblem(secret, h, body, now), 'signature_mismatch');
});

test('a stale or future timestamp fails even with a valid MAC; the tolerance is adjustable', () => {
  const h = signWebhook(secret, body, t);
  assert.equal(webhookSignatureProblem(secret, h, body, now + 301_000), 'timestamp_out_of_tolerance');
  assert.equal(webhookSignatureProblem(secret, h, body, now - 301_000), 'timestamp_out_of_tolerance');
  assert.equal(verifyWebhookSignature(secret, h, body, now + 301_000, 600), true);
  // A replayed timestamp cannot be swapped in: t is inside the signed text.
  const forged = h.replace(`t=${t}`, `t=${t + 3600}`);
  assert.equal(webhookSignatureProblem(secret, forged, body, now + 3_600_000), 'signature_mismatch');
});

test('missing and malformed headers are told apart; any one of several v1 entries may match', () => {
  assert.equal(webhookSignatureProblem(secret, undefined, body, now), 'missing_header');
  assert.equal(webhookSignatureProblem(secret, '', body, now), 'missing_header');
  assert.equal(webhookSignatureProblem(secret, 'garbage', body, now), 'malformed_header');
  assert.equal(webhookSignatureProblem(secret, `t=${t}`, body, now), 'malformed_header');
  assert.equal(webhookSignatureProblem(secret, `t=${t},v1=abc`, body, now), 'malformed_header');
  assert.equal(webhookSignatureProblem(secret, `v1=${'0'.repeat(64)}`, body, now), 'malformed_header');
  const good = signWebhook(secret, body, t).split(',')[1]!;
  assert.equal(verifyWebhookSignature(secret, `t=${t},v1=${'0'.repeat(64)},${good}`, body, now), true);
  assert.equal(verifyWebhookSignature(secret, ` t=${t} , ${good.toUpperCase().replace('V1', 'v1')} `, body, now), true);
});

test('generated secrets are 32 random bytes with the whsec_ prefix', () => {
  const a = generateWebhookSecret((n) => Buffer.alloc(n, 1));
  assert.match(a, /^whsec_[A-Za-z0-9_-]{43}$/);
  assert.notEqual(generateWebhookSecret((n) => Buffer.alloc(n, 2)), a);
});
