/** Several real processes on one SQLite file: the multi-process lock contract (../contract/locks.test-support.ts). */
import { sqlite } from '../contract/harness.test-support.js';
import { lockProcessTests } from '../contract/locks.test-support.js';

lockProcessTests(sqlite);
