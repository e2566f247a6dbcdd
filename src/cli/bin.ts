// The `dropkey` binary (dist/cli/dropkey.cjs, CommonJS so that start-up needs no ES module loader).
// `dropkey token` is the hot path (`curl -H "Authorization: Bearer $(dropkey token)"` runs it per request, and
// bench/token-startup.mjs measures it): it loads its own one-file bundle. Everything else goes to main.js.
const args = process.argv.slice(2);
if (args[0] === 'token' && !args.includes('--help') && !args.includes('-h')) {
  require('./token.cjs');
} else {
  import('./main.js').catch((err: unknown) => {
    process.stderr.write(`dropkey: could not start: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}
