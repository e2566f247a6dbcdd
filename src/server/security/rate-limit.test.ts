import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from './rate-limit.js';

test('token bucket: burst, refill with the injected clock, separate keys and purposes, 429 with Retry-After', () => {
  let now = 0;
  const rl = new RateLimiter(() => now, { p: { capacity: 3, refillPerSecond: 1 }, q: { capacity: 1, refillPerSecond: 0.1 } });
  assert.deepEqual([rl.take('p', 'ip1'), rl.take('p', 'ip1'), rl.take('p', 'ip1')], [0, 0, 0]);
  assert.equal(rl.take('p', 'ip1'), 1);
  assert.equal(rl.take('p', 'ip2'), 0, 'per client');
  assert.equal(rl.take('q', 'ip1'), 0, 'per purpose');
  assert.equal(rl.take('q', 'ip1'), 10);
  assert.throws(() => rl.check('q', 'ip1'), (err: any) => err.code === 'DROPKEY_RATE_LIMITED' && err.headers['Retry-After'] === '10');
  now += 1000;
  assert.equal(rl.take('p', 'ip1'), 0, 'refilled one token');
  assert.equal(rl.take('p', 'ip1'), 1);
  assert.throws(() => rl.take('nope', 'x'), /no rate-limit policy/);
});

test('memory stays bounded under many clients', () => {
  let now = 0;
  const rl = new RateLimiter(() => now, { p: { capacity: 2, refillPerSecond: 1 } }, 100);
  for (let i = 0; i < 1000; i++) rl.take('p', `ip${i}`);
  now += 10_000;
  assert.equal(rl.take('p', 'fresh'), 0);
});
