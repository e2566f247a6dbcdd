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

test('withRetry: a hung endpoint is given up after the total time, not after attempts x attempt timeout', async () => {
  const { withRetry, resolveRetry } = await import('./retry.js');
  const { ErrorCodes } = await import('../errors.js');
  // Each attempt would wait for an answer forever; only the signal ends it (as a real attempt's own timeout would).
  const retry = resolveRetry({ attempts: 4, baseDelayMs: 0, attemptTimeoutMs: 60_000, totalTimeoutMs: 50 });
  assert.equal(resolveRetry({}).totalTimeoutMs, 60_000, 'default: one minute in all');
  let calls = 0;
  const hung = (signal: AbortSignal | undefined) => {
    calls++;
    return new Promise<never>((_res, rej) => signal?.addEventListener('abort', () => rej(signal.reason), { once: true }));
  };
  await assert.rejects(withRetry(hung, { retry, sleep: async () => {} }), (e: unknown) => {
    const err = e as { code: string; message: string; details?: Record<string, unknown> };
    assert.equal(err.code, ErrorCodes.DROPBOX_UNAVAILABLE);
    assert.match(err.message, /did not answer within 0\.05 s/);
    assert.equal(err.details?.['totalTimeoutMs'], 50);
    return true;
  });
  assert.equal(calls, 1);
  // The caller's own cancel is still a cancel.
  const ac = new AbortController();
  const p = withRetry(hung, { retry: resolveRetry({ totalTimeoutMs: 60_000 }), sleep: async () => {}, signal: ac.signal });
  ac.abort();
  await assert.rejects(p, (e: unknown) => (e as { code: string }).code === ErrorCodes.CANCELLED);
});
