import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultSleep } from '../sleep.js';
import { realSleep } from '../store/lease.js';
import { retryPolicy } from './retry.js';

test('the facade, the Dropbox client and the store share one defaultSleep (no second copy to drift)', () => {
  assert.equal(retryPolicy().sleep, defaultSleep);
  assert.equal(realSleep, defaultSleep);
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

test('withRetry: after the last attempt, a network failure points at the network and the Dropbox URL; an HTTP 503 does not', async () => {
  const { withRetry, resolveRetry } = await import('./retry.js');
  const { DropboxApiError, ErrorCodes } = await import('../errors.js');
  const retry = resolveRetry({ attempts: 2, baseDelayMs: 0 });
  const sleep = async () => {};
  const refused = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
  let calls = 0;
  await assert.rejects(withRetry(async () => { calls++; throw refused; }, { retry, sleep }), (e: unknown) => {
    const err = e as { code: string; hint?: string };
    assert.equal(err.code, ErrorCodes.DROPBOX_UNAVAILABLE);
    assert.match(err.hint ?? '', /DROPKEY_DROPBOX_URL/);
    return true;
  });
  assert.equal(calls, 2);
  const busy = new DropboxApiError(503, 'server error', null, 'Dropbox answered 503');
  await assert.rejects(withRetry(async () => { throw busy; }, { retry, sleep }), (e: unknown) => {
    assert.doesNotMatch((e as { hint?: string }).hint ?? '', /DROPKEY_DROPBOX_URL/);
    return true;
  });
});
