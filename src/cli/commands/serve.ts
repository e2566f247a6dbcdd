/**
 * `dropkey serve`: the self-hosted connection service (docs/deploying.md). The server itself lives in src/server/;
 * this command parses options, reads the configuration (src/config.ts) and hands both to server/main.ts.
 */
import type { Command, CommandOptions } from '../context.js';
import { intOption, loadConfig, parseOptions } from '../config.js';

const usage = `Usage: dropkey serve [--port N] [--host 127.0.0.1] [--public-url URL]

Runs the dropkey service: web UI, JSON API with API keys (/api/v1, described at /api/openapi.json), connect
links, the Dropbox proxy (/proxy/{connection}/2/{route}), webhooks and background jobs, /healthz, /readyz and
/metrics, on the same store as the CLI. Prints "dropkey serve listening on http://HOST:PORT"
first; JSON logs go to stderr. Stops gracefully on Ctrl-C or SIGTERM (in-flight requests finish).

On first run (no admin yet) it prints a one-time setup URL (/setup?token=...), valid for 24 hours.

Options:
  --port N           Port to listen on (default 8080; 0 picks a free one).
  --host ADDR        Address to bind (default 127.0.0.1, loopback only). Use 0.0.0.0 behind a reverse proxy.
  --public-url URL   The URL users and Dropbox reach the server at (default http://HOST:PORT; also
                     $DROPKEY_PUBLIC_URL). The OAuth redirect URI is URL/oauth/callback: register it in the
                     App Console. Dropbox accepts http only for localhost/127.0.0.1.

Environment: DROPKEY_HOME, DROPKEY_MASTER_KEY, DROPKEY_DATABASE_URL (postgres://... for several instances;
see docs/deploying.md), DROPKEY_DROPBOX_URL, DROPKEY_PUBLIC_URL, DROPKEY_LOG_LEVEL, DROPKEY_JOBS=off (no
background jobs on this instance; they still run once across the others), DROPKEY_GC_HEADROOM=off (keep V8's
default old-generation sizing; see docs/proxy.md "Throughput").
`;

const options = {
  port: { type: 'string' },
  host: { type: 'string' },
  'public-url': { type: 'string' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Run the dropkey service (token API, connect links, metrics)',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('serve', ctx.argv, options);
    const port = intOption('serve', 'port', values.port, { max: 65535 });
    const config = await loadConfig(ctx.env, ctx.cwd);
    const { startServer } = await import('../../server/main.js');
    // Old-generation headroom so proxied streams do not trigger a full GC every ~10 MiB (server/gc-headroom.ts).
    // Process-wide V8 setting, hence here in the serve process's entry point; DROPKEY_GC_HEADROOM=off skips it.
    // Likewise glibc's heap, kept instead of trimmed and faulted in again at every scavenge (raiseMallocThresholds).
    const { raiseMallocThresholds, startGcHeadroom } = await import('../../server/gc-headroom.js');
    const gc = config.gcHeadroom ? startGcHeadroom() : undefined;
    if (config.gcHeadroom) raiseMallocThresholds(ctx.env);
    const server = await startServer({
      config,
      ...(port === undefined ? {} : { port }),
      ...(values.host === undefined ? {} : { host: values.host }),
      ...(values['public-url'] === undefined ? {} : { publicUrl: values['public-url'] }),
      stdout: ctx.stdout,
      logStream: ctx.stderr,
      signal: ctx.signal,
    }).catch((err: unknown) => {
      gc?.stop();
      throw err;
    });
    await server.done;
    gc?.stop();
  },
};
export default command;
