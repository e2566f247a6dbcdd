import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../../errors.js';
import { ServerEvents, type ServerEvent } from '../events.js';
import { classifyRefreshError, REFRESH_FAILED_QUIET_MS, reportRefreshFailure } from './events.js';

const grantRejected = () =>
  new DropboxApiError(400, 'invalid_grant', { error: 'invalid_grant' }, 'Dropbox no longer accepts this refresh token', { code: ErrorCodes.REAUTH_REQUIRED });

test('a fresh invalid_grant (REAUTH_REQUIRED caused by the grant answer) is needs_reauth, even wrapped', () => {
  const fresh = new DropkeyError(ErrorCodes.REAUTH_REQUIRED, 'Connection "a" must be authorized again', { cause: grantRejected() });
  assert.equal(classifyRefreshError(fresh)?.type, 'connection.needs_reauth');
  assert.equal(classifyRefreshError(fresh)?.reason, 'invalid_grant');
  const wrapped = new DropkeyError(ErrorCodes.REAUTH_REQUIRED, 'again', { cause: fresh });
  assert.equal(classifyRefreshError(wrapped)?.type, 'connection.needs_reauth');
});

test('an already broken connection (REAUTH_REQUIRED without a Dropbox answer) yields nothing', () => {
  assert.equal(classifyRefreshError(new DropkeyError(ErrorCodes.REAUTH_REQUIRED, 'must be authorized again')), null);
});

test('outages and rejected app credentials are refresh_failed; user errors and unknown errors are not', () => {
  assert.equal(classifyRefreshError(new DropkeyError(ErrorCodes.DROPBOX_UNAVAILABLE, 'down'))?.type, 'connection.refresh_failed');
  assert.equal(classifyRefreshError(new DropkeyError(ErrorCodes.INVALID_CLIENT, 'bad secret'))?.reason, ErrorCodes.INVALID_CLIENT);
  assert.equal(classifyRefreshError(new DropkeyError(ErrorCodes.NOT_FOUND, 'no such connection')), null);
  assert.equal(classifyRefreshError(new DropkeyError(ErrorCodes.CANCELLED, 'cancelled')), null);
  assert.equal(classifyRefreshError(new Error('boom')), null);
});

test('refresh_failed is throttled per connection; needs_reauth never is and resets the throttle', () => {
  let now = 1_000_000;
  const events = new ServerEvents();
  const got: ServerEvent[] = [];
  events.on((e) => void got.push(e));
  const s = { events, clock: () => now };
  const down = new DropkeyError(ErrorCodes.DROPBOX_UNAVAILABLE, 'down');
  assert.equal(reportRefreshFailure(s, 'a', down), 'connection.refresh_failed');
  assert.equal(reportRefreshFailure(s, 'a', down), null);
  assert.equal(reportRefreshFailure(s, 'b', down), 'connection.refresh_failed', 'per connection');
  now += REFRESH_FAILED_QUIET_MS;
  assert.equal(reportRefreshFailure(s, 'a', down), 'connection.refresh_failed');
  const fresh = new DropkeyError(ErrorCodes.REAUTH_REQUIRED, 'x', { cause: grantRejected() });
  assert.equal(reportRefreshFailure(s, 'a', fresh, { detected_by: 'test' }), 'connection.needs_reauth');
  assert.equal(reportRefreshFailure(s, 'a', down), 'connection.refresh_failed');
  assert.deepEqual(got.map((e) => `${e.connection}:${e.type}`), ['a:connection.refresh_failed', 'b:connection.refresh_failed', 'a:connection.refresh_failed', 'a:connection.needs_reauth', 'a:connection.refresh_failed']);
  assert.equal(got[3]!.data['detected_by'], 'test');
  assert.equal(got[3]!.at, now);
});
