// One "CLI process" of the cluster tests: runs the `dropkey token` command N times with at most C in flight, each
// call exactly as a separate `dropkey token` invocation runs it (src/cli/index.ts run(): parse, open the store
// named by DROPKEY_DATABASE_URL, get a valid token — refreshing under the store lock when needed —, close), and
// prints one JSON line per call: {"ok":true,"token":"..."} or {"ok":false,"error":"..."}. Tokens go to the parent
// test over a pipe, never to a log. One process instead of N keeps 2,000 calls within the test's time budget.
//
//   node test/cluster/cli-driver.mjs CONNECTION COUNT CONCURRENCY
// Environment: as for the CLI (DROPKEY_DATABASE_URL, DROPKEY_MASTER_KEY, DROPKEY_DROPBOX_URL, DROPKEY_HOME).
// It waits for "go\n" on stdin before starting, so the test can release every caller at once.
import { createInterface } from 'node:readline';
import { Writable, Readable } from 'node:stream';

const [connection = 'default', countArg = '1', concArg = '1'] = process.argv.slice(2);
const count = Number(countArg);
const concurrency = Number(concArg);
const { run } = await import('../../dist/cli/index.js');

function sink() {
  let text = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += chunk;
      cb();
    },
  });
  return { stream, text: () => text };
}

async function tokenOnce() {
  const out = sink();
  const err = sink();
  const code = await run(['token', '--connection', connection], {
    env: process.env,
    cwd: process.cwd(),
    stdin: Readable.from([]),
    stdout: out.stream,
    stderr: err.stream,
    signal: new AbortController().signal,
  });
  return code === 0 ? { ok: true, token: out.text().trim() } : { ok: false, error: `exit ${code}: ${err.text().slice(0, 300)}` };
}

const lines = createInterface({ input: process.stdin });
await new Promise((r) => lines.once('line', r));
lines.close();
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      next++;
      process.stdout.write(`${JSON.stringify(await tokenOnce())}\n`);
    }
  }),
);
