import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultSleep } from './retry.js';
import { defaultSleep as clientSleep } from '../dropbox/retry.js';

test('the facade and the Dropbox client share one defaultSleep (no second copy to drift)', () => {
  assert.equal(defaultSleep, clientSleep);
});

test('defaultSleep: resolves after the delay; an abort rejects with the signal\'s reason and clears the timer', async () => {
  await defaultSleep(0);
  const done = new AbortController();
  done.abort(new Error('already'));
  await assert.rejects(defaultSleep(10, done.signal), /already/);
  const later = new AbortController();
  const p = defaultSleep(60_000, later.signal);
  later.abort(new Error('stopped'));
  // A pending 60 s timer would keep this test process alive: the abort must clear it.
  await assert.rejects(p, /stopped/);
});
