// One "CLI process" of the cluster tests: runs `dropkey token` N times with at most C in flight, each call on
// its own store handle exactly as a separate `dropkey token` invocation does (open the store, get a valid
// token — refreshing under the store lock when needed —, close), and prints one JSON line per call:
// {"ok":true,"token":"..."} or {"ok":false,"error":"..."}. Tokens go to the parent test over a pipe, never to a log.
//
//   node test/cluster/cli-driver.mjs CONNECTION COUNT CONCURRENCY
// Environment: DROPKEY_DATABASE_URL, DROPKEY_MASTER_KEY, DROPKEY_DROPBOX_URL, DROPKEY_HOME (as for the CLI).
// It waits for "go\n" on stdin before starting, so the test can release every caller at once.
import { createInterface } from 'node:readline';

const [connection = 'default', countArg = '1', concArg = '1'] = process.argv.slice(2);
const count = Number(countArg);
const concurrency = Number(concArg);
const { Dropkey } = await import('../../dist/connections/dropkey.js');
const { openStore } = await import('../../dist/store/index.js');
const { dropboxUrlsFromEnv } = await import('../../dist/dropbox/hosts.js');
const env = process.env;

async function tokenOnce() {
  // The same steps as `dropkey token` (src/cli/commands/token.ts via src/cli/session.ts), with the store chosen
  // by DROPKEY_DATABASE_URL.
  const store = await openStore({ home: env.DROPKEY_HOME, masterKey: env.DROPKEY_MASTER_KEY, databaseUrl: env.DROPKEY_DATABASE_URL });
  try {
    const dk = await Dropkey.open({ store, urls: dropboxUrlsFromEnv(env), fetch: globalThis.fetch, now: Date.now });
    const t = await dk.getToken(connection, {});
    return { ok: true, token: t.accessToken };
  } catch (err) {
    return { ok: false, error: String(err?.message ?? err).slice(0, 300) };
  } finally {
    await store.close();
  }
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
