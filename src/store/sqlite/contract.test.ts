/**
 * Every store contract (core, locks, server, webhooks, back-off) against the SQLite driver. Its own cases are in
 * ./sqlite.test.ts; several processes on one file in ./processes.e2e.test.ts.
 */
import { backoffContractTests } from '../contract/backoff.test-support.js';
import { harnessOf, storeContractTests } from '../contract/core.test-support.js';
import { sqlite } from '../contract/harness.test-support.js';
import { lockContractTests } from '../contract/locks.test-support.js';
import { serverContractTests } from '../contract/server.test-support.js';
import { webhookContractTests } from '../contract/webhooks.test-support.js';

storeContractTests('sqlite', harnessOf(sqlite.make, (s) => s.core));
lockContractTests('sqlite', harnessOf(sqlite.make, (s) => s.locks));
serverContractTests(sqlite);
webhookContractTests(sqlite);
backoffContractTests(sqlite);
