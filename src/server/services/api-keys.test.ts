/**
 * ApiKeyService.authenticate while the store cannot be reached: a key the store confirmed recently keeps working
 * from memory for the outage grace, a key never seen or confirmed too long ago gets the store's error, and other
 * store errors are never masked.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { ApiKeyRecord, ServerStore } from '../../store/server-types.js';
import { generateApiKey } from '../security/secrets.js';
import { ApiKeyService } from './api-keys.js';
import type { AuditLog } from './audit.js';

function rig(grace: number) {
  const { key, prefix, hash } = generateApiKey();
  const rec: ApiKeyRecord = {
    id: '1', name: 'k', prefix, hash, permissions: ['token:read'], connections: '*',
    createdAt: 0, createdBy: 't', lastUsedAt: null, revokedAt: null, tokenHandouts: 0,
  } as ApiKeyRecord;
  const state = { failure: undefined as Error | undefined, reads: 0, now: 1_000_000 };
  const store = {
    async getApiKeyByHash(h: string) {
      state.reads++;
      if (state.failure) throw state.failure;
      return h === hash ? rec : undefined;
    },
  } as unknown as ServerStore;
  const svc = new ApiKeyService({ serverStore: store, clock: () => state.now, config: { apiKeyCacheMs: 5_000, storeOutageGraceMs: 60_000 * grace } }, {} as AuditLog);
  return { svc, header: `Bearer ${key}`, state };
}

const down = () => new DropkeyError(ErrorCodes.STORE, 'store: cannot read an API key: PostgreSQL is unreachable', { details: { operation: 'read an API key', retryable: true, unavailable: true } });

test('a key confirmed within the grace keeps working while the store is down, and the store is asked at most once a second', async () => {
  const { svc, header, state } = rig(5);
  assert.equal((await svc.authenticate(header)).name, 'k');
  state.failure = down();
  state.now += 6_000; // past the 5 s cache
  state.reads = 0;
  for (let i = 0; i < 10; i++) assert.equal((await svc.authenticate(header)).name, 'k');
  assert.equal(state.reads, 1, 'one store read for ten requests within a second');
  state.now += 1_001;
  await svc.authenticate(header);
  assert.equal(state.reads, 2);
  // Back up: the store is read again and the key confirmed afresh.
  state.failure = undefined;
  state.now += 1_001;
  await svc.authenticate(header);
  assert.equal(state.reads, 3);
});

test('past the grace, or for a key never confirmed, the outage is reported, not hidden', async () => {
  const { svc, header, state } = rig(5);
  state.failure = down();
  await assert.rejects(svc.authenticate(header), (e: DropkeyError) => e.code === ErrorCodes.STORE);
  state.failure = undefined;
  await svc.authenticate(header);
  state.failure = down();
  state.now += 5 * 60_000 + 1;
  await assert.rejects(svc.authenticate(header), (e: DropkeyError) => e.code === ErrorCodes.STORE);
});

test('a store error that is not an outage is not masked by the cache', async () => {
  const { svc, header, state } = rig(5);
  await svc.authenticate(header);
  state.failure = new DropkeyError(ErrorCodes.STORE, 'store: cannot read an API key: damaged row', { details: { operation: 'read an API key' } });
  state.now += 6_000;
  await assert.rejects(svc.authenticate(header), /damaged row/);
});
