/**
 * `dropkey login`: the authorization-code flow with PKCE and token_access_type=offline (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize, https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token),
 * received on a loopback redirect (RFC 8252) or, with --no-redirect, pasted by the user from Dropbox's page.
 *
 * Nothing is written until the code has been exchanged and the account checked (the facade's finishLogin): Ctrl-C,
 * a timeout, Cancel on the consent page or a failed exchange leave the store exactly as it was.
 */
import type { Command, CommandContext, CommandOptions } from '../context.js';
import { DEFAULT_LOGIN_PORT, intOption, parseOptions, scopeList, usageError } from '../config.js';
import { adviceLines } from '../fix.js';
import { terminalSafe, writeJson } from '../output.js';
import { duration, progressStream, startProgress } from '../progress.js';
import { withSession, type Session } from '../session.js';
import { connectionJson, describeConnection } from '../view.js';
import { validateName } from '../../connections/names.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { ConnectResult } from '../../connections/dropkey.js';

const DEFAULT_TIMEOUT_SECONDS = 300;

const usage = `Usage: dropkey login [--connection NAME] [--app NAME] [--scope S... | --add-scope S...] [--port N] [--no-browser] [--no-redirect] [--timeout SECONDS] [--json]

Connects a Dropbox account: opens Dropbox's consent page, receives the answer on
http://127.0.0.1:PORT/callback, and stores the connection (a refresh token, so it never expires).

Options:
  --connection NAME  The connection to create or re-authorize (default: $DROPKEY_CONNECTION or "default").
  --app NAME         The app to connect with (default: the connection's app, or the only app there is).
  --scope S          Ask only for these scopes (repeat, or space-separated). Default: the app's scopes.
  --add-scope S      Add these scopes to an existing connection (repeat, or space-separated): Dropbox asks only
                     for them and the new token keeps the scopes already granted (include_granted_scopes).
  --port N           Port of the loopback redirect URI (default ${DEFAULT_LOGIN_PORT}). It must be registered in the
                     App Console exactly as http://127.0.0.1:N/callback. 0 picks a free port (only for servers
                     that accept any port, such as dropkey emulator).
  --no-browser       Do not try to open a browser; just print the URL.
  --no-redirect      For machines without a browser: print the URL, open it anywhere, then paste the code that
                     Dropbox shows. Needs no redirect URI.
  --timeout SECONDS  Give up after this long (default ${DEFAULT_TIMEOUT_SECONDS}).
  --json             Print the new connection as JSON.
`;

const options = {
  connection: { type: 'string' },
  app: { type: 'string' },
  scope: { type: 'string', multiple: true },
  'add-scope': { type: 'string', multiple: true },
  port: { type: 'string' },
  'no-browser': { type: 'boolean' },
  'no-redirect': { type: 'boolean' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Connect a Dropbox account (browser, loopback redirect, or --no-redirect to paste a code)',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('login', ctx.argv, options);
    const port = intOption('login', 'port', values.port, { min: 0, max: 65535 }) ?? DEFAULT_LOGIN_PORT;
    const timeoutMs = (intOption('login', 'timeout', values.timeout, { min: 1, max: 86_400 }) ?? DEFAULT_TIMEOUT_SECONDS) * 1000;
    if (values['no-redirect'] && values.port !== undefined) throw usageError('login', '--port has no effect with --no-redirect (no redirect URI is used)');
    const scopes = scopeList(values.scope);
    const addScopes = scopeList(values['add-scope']);
    if (scopes !== undefined && addScopes !== undefined) throw usageError('login', '--scope and --add-scope contradict each other (--scope asks for exactly these, --add-scope keeps the granted ones)');

    const result = await withSession(ctx, async (s) => {
      const connection = validateName('connection', values.connection ?? s.cfg.connection);
      // Without --app the facade picks the connection's app (a re-login) or the only registered app.
      const app = values.app === undefined ? undefined : validateName('app', values.app);
      const base: LoginBase = {
        connection,
        ...(app === undefined ? {} : { app }),
        ...(scopes === undefined ? {} : { scopes }),
        ...(addScopes === undefined ? {} : { addScopes }),
      };
      return values['no-redirect']
        ? loginPasted(ctx, s, base, timeoutMs)
        : loginLoopback(ctx, s, base, { port, timeoutMs, openBrowser: !values['no-browser'] });
    });
    const info = result.connection;
    for (const w of result.warnings) ctx.stderr.write(terminalSafe(`Warning: ${w}\n`));
    if (values.json) writeJson(ctx, { ...connectionJson(info, Date.now()), created: result.created, warnings: result.warnings });
    else {
      ctx.stdout.write(`${result.created ? 'Connected' : 'Reconnected'} "${info.name}": ${describeConnection(info, Date.now())}\n`);
      ctx.stdout.write(`Get a token with: dropkey token${info.name === 'default' ? '' : ` --connection ${info.name}`}\n`);
    }
  },
};
export default command;

interface LoginBase {
  app?: string;
  connection: string;
  scopes?: string[];
  addScopes?: string[];
}

async function loginLoopback(
  ctx: CommandContext,
  s: Session,
  base: LoginBase,
  o: { port: number; timeoutMs: number; openBrowser: boolean },
): Promise<ConnectResult> {
  // Resolve the app and scopes first (startLogin writes nothing): a mistyped --app must be reported as such, not
  // hidden behind "port busy" from binding the callback port.
  await s.dk.startLogin(base);
  const { startCallbackServer } = await import('../loopback.js');
  const server = await startCallbackServer({ port: o.port, timeoutMs: o.timeoutMs, signal: ctx.signal });
  try {
    const pending = await s.dk.startLogin({ ...base, redirectUri: server.redirectUri });
    const codePromise = server.waitForCode(pending.state);
    let opened = false;
    if (o.openBrowser) {
      const { openBrowser } = await import('../browser.js');
      opened = await openBrowser(pending.authorizeUrl, { env: ctx.env, platform: process.platform });
    }
    ctx.stderr.write(
      `${opened ? 'Opening Dropbox in your browser. If it does not open, visit' : 'Open this URL in a browser'} to connect "${pending.connection}" with app "${pending.app}":\n\n` +
        `  ${pending.authorizeUrl}\n\n` +
        `Waiting for Dropbox to redirect to ${server.redirectUri} (Ctrl-C to cancel)...\n`,
    );
    // On a terminal, how long the browser has been waited for and when the login gives up (stderr only).
    const progress = startProgress(progressStream(ctx), (ms) => `Waiting for the browser... ${duration(ms)} (gives up in ${duration(o.timeoutMs - ms)})`);
    const code = await codePromise.finally(() => progress.stop());
    try {
      const result = await s.dk.finishLogin({ pending, code, signal: ctx.signal });
      const info = result.connection;
      server.finish({ ok: true, message: `dropkey connected "${info.name}" to ${info.email ?? info.teamName ?? info.accountId ?? 'Dropbox'}.` });
      return result;
    } catch (err) {
      server.finish(err instanceof DropkeyError
        ? { ok: false, message: err.message, advice: adviceLines(err) }
        : { ok: false, message: 'The code exchange failed; see the terminal.' });
      throw err;
    }
  } finally {
    await server.close();
  }
}

async function loginPasted(ctx: CommandContext, s: Session, base: LoginBase, timeoutMs: number): Promise<ConnectResult> {
  const pending = await s.dk.startLogin(base);
  ctx.stderr.write(
    `1. Open this URL in a browser on any device and sign in to Dropbox:\n\n  ${pending.authorizeUrl}\n\n` +
      `2. Click Allow. Dropbox then shows an access code.\n3. Paste the code here and press Enter: `,
  );
  const { readLine } = await import('../input.js');
  const pasted = (await readLine(ctx, 'code', timeoutMs)).trim().replace(/^["']|["']$/g, '');
  if (pasted === '') {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'no code was pasted; nothing was saved.', { hint: 'Run dropkey login --no-redirect again.' });
  }
  return s.dk.finishLogin({ pending, code: pasted, signal: ctx.signal });
}
