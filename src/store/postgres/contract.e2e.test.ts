/**
 * Every store contract (core, locks, server, webhooks, back-off) against the PostgreSQL driver (needs
 * DROPKEY_TEST_DATABASE_URL; each harness works in a fresh schema). Its own cases are in ./postgres.e2e.test.ts;
 * several processes on one schema in ./processes.e2e.test.ts.
 */
import { test } from 'node:test';
import { backoffContractTests } from '../contract/backoff.test-support.js';
import { harnessOf, storeContractTests } from '../contract/core.test-support.js';
import { postgres } from '../contract/harness.test-support.js';
import { lockContractTests } from '../contract/locks.test-support.js';
import { serverContractTests } from '../contract/server.test-support.js';
import { webhookContractTests } from '../contract/webhooks.test-support.js';

if (postgres.skip) {
  test('PostgreSQL store contracts', { skip: postgres.skip }, () => {});
} else {
  storeContractTests('postgres', harnessOf(postgres.make, (s) => s.core));
  lockContractTests('postgres', harnessOf(postgres.make, (s) => s.locks));
  serverContractTests(postgres);
  webhookContractTests(postgres);
  backoffContractTests(postgres);
}
