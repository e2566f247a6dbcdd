/** Several real processes on one PostgreSQL schema: the multi-process lock contract (../contract/locks.test-support.ts). */
import { postgres } from '../contract/harness.test-support.js';
import { lockProcessTests } from '../contract/locks.test-support.js';

lockProcessTests(postgres);
