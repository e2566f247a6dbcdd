/**
 * `dropkey demo`: the README's one-command demo. Starts the Dropbox emulator in this process, then runs the real
 * dropkey commands against it (their real output, in a throw-away data directory): app add, login through the
 * loopback redirect, token, a few Dropbox API calls with that token, list. Then it prints the environment lines that
 * point another shell at the emulator and starts `dropkey serve` on the same data directory and emulator, both
 * running until Ctrl-C (or it stops at once with --exit).
 *
 * The consent step: the demo's emulator runs with auto-approve (as `dropkey emulator --auto-approve` does), and the
 * demo plays the browser: it fetches the authorize URL that `dropkey login` printed, the emulator approves as its
 * demo account and redirects to login's loopback callback, exactly the HTTP exchange a browser would make.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import type { Command, CommandContext, CommandOptions } from '../context.js';
import { intOption, parseOptions } from '../config.js';
import { shellQuote } from '../output.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';

const usage = `Usage: dropkey demo [--home DIR] [--port N] [--exit]

Runs the whole dropkey flow against a built-in Dropbox emulator: no Dropbox account or network needed.

Options:
  --home DIR  Data directory to use (default: a new temporary directory, deleted at the end).
  --port N    Port for the emulator on 127.0.0.1 (default: a free one).
  --exit      Finish right after the demo instead of keeping the emulator and dropkey serve running until Ctrl-C.
`;

const options = {
  home: { type: 'string' },
  port: { type: 'string' },
  exit: { type: 'boolean' },
} as const satisfies CommandOptions;

/** The commands the demo runs, loaded as the command table does. */
const STEPS = {
  app: () => import('./app.js'),
  login: () => import('./login.js'),
  token: () => import('./token.js'),
  list: () => import('./list.js'),
  doctor: () => import('./doctor.js'),
};

const command: Command = {
  summary: 'See the whole flow work against a built-in Dropbox emulator (no account needed)',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('demo', ctx.argv, options);
    const port = intOption('demo', 'port', values.port, { max: 65535 }) ?? 0;
    const out = (s: string): void => void ctx.stdout.write(s);

    const emulatorModule = await import('../../emulator/index.js');
    const seed = emulatorModule;
    const emulator = emulatorModule.createEmulator({ autoApprove: true });
    const url = (await emulator.listen(port, '127.0.0.1')).url.replace(/\/+$/, '');
    const ownHome = values.home === undefined;
    const home = values.home === undefined ? await mkdtemp(join(tmpdir(), 'dropkey-demo-')) : resolve(ctx.cwd, values.home);

    // The demo's commands see only their own configuration: a clean data directory and the emulator's URL.
    const env: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(ctx.env)) if (!k.startsWith('DROPKEY_')) env[k] = v;
    env['DROPKEY_HOME'] = home;
    env['DROPKEY_DROPBOX_URL'] = url;
    if (ctx.env['DROPKEY_MASTER_KEY']) env['DROPKEY_MASTER_KEY'] = ctx.env['DROPKEY_MASTER_KEY'];

    try {
      out(`dropkey demo: a Dropbox emulator is listening on ${url}\n`);
      out(`Data directory: ${home}${ownHome ? ' (temporary)' : ''}\n`);
      out(`Demo app: key ${seed.DEMO_APP_KEY}, secret ${seed.DEMO_APP_SECRET} (public: they only work against the emulator).\n`);

      // The steps run the command modules themselves (not the CLI's runner, which loads this module: no cycle),
      // and report a failure as the CLI would.
      const { reportError } = await import('../report.js');
      const step = async (args: string[], o: { stdin?: CommandContext['stdin']; stderr?: CommandContext['stderr'] } = {}): Promise<void> => {
        out(`\n$ dropkey ${args.map(shellQuote).join(' ')}\n`);
        const [name, ...rest] = args;
        const stepCtx: CommandContext = {
          argv: rest,
          env,
          cwd: ctx.cwd,
          stdin: o.stdin ?? ctx.stdin,
          stdout: ctx.stdout,
          stderr: o.stderr ?? ctx.stderr,
          signal: ctx.signal,
        };
        let code: number;
        try {
          const result = await (await STEPS[name as keyof typeof STEPS]()).default.run(stepCtx);
          code = typeof result === 'number' ? result : 0;
        } catch (err) {
          code = reportError(err, stepCtx);
        }
        if (code !== 0) {
          throw new DropkeyError(ErrorCodes.INTERNAL, `the demo step "dropkey ${args.join(' ')}" failed (exit ${code}); see above.`, {
            hint: 'Report this with the output above. Run with DROPKEY_DEBUG=1 for details.',
          });
        }
      };

      await step(['app', 'add', '--name', 'demo', '--key', seed.DEMO_APP_KEY, '--secret', '-'], { stdin: fromString(seed.DEMO_APP_SECRET) });

      // login prints the authorize URL on stderr; the demo acts as the browser and follows it.
      let browser: Promise<void> | undefined;
      const watcher = lineWatcher(ctx.stderr, (line) => {
        const m = /^\s+(http:\/\/\S+\/oauth2\/authorize\?\S+)$/.exec(line);
        if (m && !browser) {
          out(`(demo) Playing the browser: opening the consent page; the emulator approves as ${seed.DEMO_ACCOUNT_EMAIL} and redirects to the loopback callback.\n`);
          browser = fetch(m[1]!).then(async (res) => {
            const html = await res.text();
            const title = /<h1[^>]*>([\s\S]*?)<\/h1>/.exec(html)?.[1]?.replace(/<[^>]+>|&#\d+;/g, '').trim();
            out(`(demo) The browser shows: "${title ?? `HTTP ${res.status}`}"\n`);
          });
        }
      });
      await step(['login', '--app', 'demo', '--port', '0', '--no-browser', '--timeout', '60'], { stderr: watcher });
      await browser;

      await step(['token']);
      await step(['token', '--json']);

      // A program using the token, as curl would: who am I, upload a file, list the folder.
      const { Dropkey } = await import('../../connections/dropkey.js');
      const { dropboxUrlsFromBase } = await import('../../dropbox/hosts.js');
      const dk = await Dropkey.open({ home, urls: dropboxUrlsFromBase(url), ...(env['DROPKEY_MASTER_KEY'] ? { masterKey: env['DROPKEY_MASTER_KEY'] } : {}) });
      try {
        const token = await dk.getAccessToken('default');
        const auth = { Authorization: `Bearer ${token}` };
        out('\n$ curl -X POST $URL/2/users/get_current_account -H "Authorization: Bearer $(dropkey token)"\n');
        const me = (await call(`${url}/2/users/get_current_account`, { method: 'POST', headers: auth })) as { email?: string; name?: { display_name?: string }; account_id?: string };
        out(`${me.name?.display_name ?? '?'} <${me.email ?? '?'}> (${me.account_id ?? '?'})\n`);
        const content = `Hello from dropkey demo at ${new Date().toISOString()}\n`;
        out('\n$ curl -X POST $URL/2/files/upload -H "Authorization: Bearer $(dropkey token)" -H \'Dropbox-API-Arg: {"path":"/dropkey-demo/hello.txt","mode":"overwrite"}\' --data-binary @hello.txt\n');
        const up = (await call(`${url}/2/files/upload`, {
          method: 'POST',
          headers: { ...auth, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': JSON.stringify({ path: '/dropkey-demo/hello.txt', mode: 'overwrite' }) },
          body: content,
        })) as { path_display?: string; size?: number; content_hash?: string };
        out(`uploaded ${up.path_display ?? '?'} (${up.size ?? '?'} bytes, content_hash ${up.content_hash ?? '?'})\n`);
        out('\n$ curl -X POST $URL/2/files/list_folder -H "Authorization: Bearer $(dropkey token)" -H "Content-Type: application/json" -d \'{"path":"/dropkey-demo"}\'\n');
        const listing = (await call(`${url}/2/files/list_folder`, {
          method: 'POST',
          headers: { ...auth, 'Content-Type': 'application/json' },
          body: JSON.stringify({ path: '/dropkey-demo' }),
        })) as { entries?: Array<{ '.tag'?: string; path_display?: string; size?: number }> };
        for (const e of listing.entries ?? []) out(`${e['.tag'] ?? '?'}  ${e.path_display ?? '?'}${e.size === undefined ? '' : `  ${e.size} bytes`}\n`);
      } finally {
        await dk.close();
      }

      await step(['list']);
      await step(['doctor']);

      out('\nThe demo worked. To use the running emulator from another shell:\n\n');
      out(`  export DROPKEY_HOME=${shellQuote(home)}\n`);
      out(`  export DROPKEY_DROPBOX_URL=${url}\n`);
      out(`  dropkey token\n  dropkey list\n  curl -X POST ${url}/2/users/get_current_account -H "Authorization: Bearer $(dropkey token)"\n`);
      // Only the emulator's clock moves: dropkey keeps the expiry it recorded by this machine's clock, so the
      // hint says what each side then does (test/cli/demo.e2e.test.ts runs these lines and checks each claim).
      out(`\nEmulator control API: ${url}/_emulator/. To see a token expire, move the emulator's clock 4 hours on:\n`);
      out(`  curl -X POST ${url}/_emulator/clock -H 'Content-Type: application/json' -d '{"advance_seconds":14400}'\n`);
      out('The emulator then refuses the current token as expired (HTTP 401 expired_access_token), as Dropbox would.\n');
      out("dropkey goes by this machine's clock, which did not move: dropkey token keeps printing the same token until\n");
      out('its recorded expiry. Get a new one, which the emulator accepts, with:\n');
      out('  dropkey refresh\n');
      out('Connect your real Dropbox app next: see docs/connecting-an-app.md.\n');
      if (values.exit) return;

      // The service too, on the same data directory and the same emulator: its web UI shows the connection made
      // above, and its token API and proxy can be tried at once.
      out('\n$ dropkey serve --port 0\n');
      const { startServer } = await import('../../server/main.js');
      const { readConfig } = await import('../../config.js');
      const server = await startServer({
        config: await readConfig({ ...env, DROPKEY_LOG_LEVEL: ctx.env['DROPKEY_LOG_LEVEL'] ?? 'warn' }, { cwd: ctx.cwd }),
        port: 0,
        host: '127.0.0.1',
        stdout: ctx.stdout,
        signal: ctx.signal,
      });
      out(`\nOpen ${server.url}: create the admin with the setup link above, then see the "default" connection, add API keys,\n`);
      out('or connect another account with "Connect Dropbox" (the emulator approves at once as the demo account).\n');
      out('\nThe emulator and dropkey serve keep running; press Ctrl-C to stop.\n');
      await server.done;
      out('\nStopping the emulator.\n');
    } finally {
      await emulator.close();
      if (ownHome) await rm(home, { recursive: true, force: true });
    }
  },
};
export default command;

async function call(url: string, init: RequestInit): Promise<unknown> {
  const res = await fetch(url, init);
  const text = await res.text();
  if (!res.ok) {
    throw new DropkeyError(ErrorCodes.INTERNAL, `the demo call ${new URL(url).pathname} answered HTTP ${res.status}: ${text.slice(0, 200)}`);
  }
  return JSON.parse(text) as unknown;
}

/** A non-TTY stream that yields s and ends, like `printf %s "$SECRET" | dropkey ...`. */
function fromString(s: string): CommandContext['stdin'] {
  return Readable.from([Buffer.from(s)]);
}

/** A stream that forwards to `target` and calls onLine for each complete line written. */
function lineWatcher(target: CommandContext['stderr'], onLine: (line: string) => void): CommandContext['stderr'] {
  let buf = '';
  return new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      const s = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
      target.write(s);
      buf += s;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      cb();
    },
  });
}
