import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import type { NewAuditEntry } from '../store/server-types.js';
import type { NewWebhookEvent } from '../store/webhook-types.js';
import { cliActivitySink, cliActor } from './activity.js';

test('the CLI actor names the OS user, falls back to USER, and keeps only name characters', () => {
  assert.equal(cliActor({}, () => 'alice'), 'cli:alice');
  assert.equal(cliActor({ USER: 'bob' }, () => { throw new Error('no passwd entry'); }), 'cli:bob');
  assert.equal(cliActor({}, () => ''), 'cli:unknown');
  assert.equal(cliActor({}, () => 'ev\u001b]52;il\nx'), 'cli:ev52ilx');
});

function rig(o: { auditFails?: boolean; queueFails?: boolean } = {}) {
  const audit: NewAuditEntry[] = [];
  const queued: NewWebhookEvent[] = [];
  const warnings: string[] = [];
  const sink = cliActivitySink({
    server: { appendAudit: async (e) => { if (o.auditFails) throw new Error('SQLITE_READONLY: attempt to write a readonly database'); audit.push(...e); } },
    webhooks: { enqueueEvent: async (e) => { if (o.queueFails) throw new Error('database is locked'); queued.push(e); return ['whd_1']; } },
    actor: 'cli:alice',
    now: () => 1_700_000_000_000,
    warn: (l) => warnings.push(l),
    random: (n) => Buffer.alloc(n, 7),
  });
  return { sink, audit, queued, warnings };
}

test('an action is audited and its event queued with the body receivers get from the server', async () => {
  const r = rig();
  await r.sink({ action: 'connection.revoked', target: 'alpha', details: { revoked_at_dropbox: true }, event: { type: 'connection.revoked', connection: 'alpha', data: { app: 'main' } } });
  assert.deepEqual(r.audit, [{ at: 1_700_000_000_000, actor: 'cli:alice', action: 'connection.revoked', target: 'alpha', details: { revoked_at_dropbox: true } }]);
  assert.equal(r.queued.length, 1);
  const body = JSON.parse(r.queued[0]!.body);
  assert.deepEqual(body, { id: `evt_${'07'.repeat(16)}`, type: 'connection.revoked', created_at: '2023-11-14T22:13:20.000Z', connection: 'alpha', data: { app: 'main' } });
  assert.deepEqual(r.warnings, []);
});

test('a refresh failure is announced as the server would classify it; an action without an event queues nothing', async () => {
  const r = rig();
  const reauth = new DropkeyError(ErrorCodes.REAUTH_REQUIRED, 'Connection "a" must be authorized again', { cause: new DropboxApiError(400, 'invalid_grant', { error: 'invalid_grant' }, 'Dropbox: invalid_grant') });
  await r.sink({ action: 'connection.refresh_failed', target: 'a', details: {}, error: reauth });
  await r.sink({ action: 'connection.refreshed', target: 'a', details: {} });
  assert.deepEqual(r.queued.map((e) => e.type), ['connection.needs_reauth']);
  assert.equal(JSON.parse(r.queued[0]!.body).data.detected_by, 'cli');
});

test('failures to record are warnings, never throws', async () => {
  const r = rig({ auditFails: true, queueFails: true });
  await r.sink({ action: 'connection.revoked', target: 'alpha', details: {}, event: { type: 'connection.revoked', connection: 'alpha', data: {} } });
  assert.deepEqual(r.warnings, [
    'dropkey: warning: connection.revoked "alpha" was done, but could not be written to the audit log: SQLITE_READONLY: attempt to write a readonly database',
    'dropkey: warning: connection.revoked "alpha" was done, but its connection.revoked event could not be queued for webhooks: database is locked',
  ]);
});
