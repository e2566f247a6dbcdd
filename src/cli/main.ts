#!/usr/bin/env node
// The `dropkey` binary. The only place (with server/main.ts) that reads process.* for the CLI.
import { run } from './index.js';

const controller = new AbortController();
let interrupted = 0;
const onSignal = (sig: NodeJS.Signals): void => {
  interrupted++;
  if (interrupted > 1) process.exit(130); // a second Ctrl-C forces the exit
  controller.abort(new Error(`interrupted by ${sig}`));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const code = await run(process.argv.slice(2), {
  env: process.env,
  cwd: process.cwd(),
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  signal: controller.signal,
});
process.exitCode = code;
