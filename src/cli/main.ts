#!/usr/bin/env node
// The CLI's ES module entry: every command, loaded lazily from the command table. The installed `dropkey` binary
// is bin.ts (dist/cli/dropkey.cjs), which sends `dropkey token` to its own small bundle and everything else here.
import { run } from './index.js';
import { processContext } from './process.js';

process.exitCode = await run(process.argv.slice(2), processContext());
