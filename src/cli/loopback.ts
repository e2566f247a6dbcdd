/**
 * The loopback redirect receiver for `dropkey login` (RFC 8252 §7.3): an HTTP server on 127.0.0.1 that waits for
 * Dropbox to redirect the browser to `<redirect_uri>?code=...&state=...` (or `?error=...`), https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize.
 *
 * The browser's request is held open until the CLI has exchanged the code and validated the account, so the page
 * the user sees tells the truth ("connected as x@y" or what failed), not just "code received".
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { html, raw } from '../server/html.js';
import { CALLBACK_PATH } from './config.js';

export interface CallbackServer {
  /** The exact redirect URI to send to /oauth2/authorize and /oauth2/token. */
  redirectUri: string;
  port: number;
  /**
   * Resolves with the authorization code once a redirect with the expected state arrives. Rejects on an OAuth
   * error redirect (access_denied...), a state mismatch, the timeout, or the abort signal.
   */
  waitForCode(expectedState: string): Promise<string>;
  /**
   * Answers the browser's held request with the final outcome: `message` says what happened, each `advice` line
   * (what to do, the command to run) gets a paragraph of its own.
   */
  finish(outcome: { ok: boolean; message: string; advice?: string[] }): void;
  close(): Promise<void>;
}

export interface CallbackServerOptions {
  port: number;
  timeoutMs: number;
  signal: AbortSignal;
  host?: string;
}

export async function startCallbackServer(opts: CallbackServerOptions): Promise<CallbackServer> {
  const host = opts.host ?? '127.0.0.1';
  let pending: ServerResponse | undefined;
  let settle: { resolve: (code: string) => void; reject: (e: Error) => void } | undefined;
  let outcome: Promise<string> | undefined;
  let done = false;
  let expected: string | undefined;

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', `http://${host}`);
    if (req.method !== 'GET' || url.pathname !== CALLBACK_PATH) {
      // Browsers also ask for /favicon.ico; anything but the callback is a plain 404.
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found\n');
      return;
    }
    if (done || !settle || expected === undefined) {
      page(res, 409, 'Already handled', 'This login attempt is already finished. Return to the terminal.', false);
      return;
    }
    const q = url.searchParams;
    const error = q.get('error');
    const state = q.get('state') ?? '';
    if (!safeEqual(state, expected)) {
      // A wrong or missing state is a stale tab or a request any web page can make (an <img> pointing here): it
      // must not end the login, or the real redirect would then meet a closed port. Refuse it and keep waiting.
      page(res, 400, 'Not this login', 'This request does not belong to this login (its state value is wrong or missing), so it was ignored. ' +
        'dropkey is still waiting for Dropbox to send you back here: finish the login in the tab that dropkey login opened.', false);
      return;
    }
    if (error) {
      const denied = error === 'access_denied';
      const desc = (q.get('error_description') ?? '').slice(0, 200);
      fail(res, new DropkeyError(ErrorCodes.OAUTH_FAILED, denied
        ? 'the Dropbox consent page was cancelled (access_denied); nothing was saved.'
        : `Dropbox returned an error instead of a code: ${error.slice(0, 60)}${desc ? ` (${desc})` : ''}; nothing was saved.`, {
        hint: denied ? 'Run dropkey login again and click Allow.' : 'Check the app\'s settings in the Dropbox App Console (dropkey app check APP verifies its key and secret), then run dropkey login again.',
      }));
      return;
    }
    const code = q.get('code');
    if (!code) {
      fail(res, new DropkeyError(ErrorCodes.OAUTH_FAILED, 'the login redirect had no code parameter.', { hint: 'Run dropkey login again.' }));
      return;
    }
    pending = res;
    done = true;
    settle.resolve(code);
  });

  function fail(res: ServerResponse, err: DropkeyError): void {
    page(res, 400, 'Dropbox login failed', err.message, false, err.hint ? [err.hint] : []);
    done = true;
    settle?.reject(err);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'EADDRINUSE'
        ? new DropkeyError(ErrorCodes.BAD_INPUT, `port ${opts.port} on ${host} is already in use, so the login callback cannot listen there.`, {
          hint: `Stop the program using it, or pick another port with --port N (and register http://127.0.0.1:N${CALLBACK_PATH} as a redirect URI of your app).`,
        })
        : new DropkeyError(ErrorCodes.BAD_INPUT, `cannot listen on ${host}:${opts.port}: ${e.message}`, { hint: 'Pick another port with --port N.' }));
    });
    server.listen(opts.port, host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;

  let stopTimer = (): void => undefined;
  outcome = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      done = true;
      reject(new DropkeyError(ErrorCodes.OAUTH_FAILED, `no answer from the browser within ${Math.round(opts.timeoutMs / 1000)} seconds; nothing was saved.`, {
        hint: 'Run dropkey login again and finish the consent page sooner (or use --timeout SECONDS). On a machine without a browser, use dropkey login --no-redirect.',
      }));
    }, opts.timeoutMs);
    const onAbort = (): void => {
      done = true;
      reject(new DropkeyError(ErrorCodes.CANCELLED, 'login cancelled; nothing was saved.'));
    };
    if (opts.signal.aborted) onAbort();
    else opts.signal.addEventListener('abort', onAbort, { once: true });
    stopTimer = () => {
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onAbort);
    };
    settle = {
      resolve: (c) => { clearTimeout(timer); opts.signal.removeEventListener('abort', onAbort); resolve(c); },
      reject: (e) => { clearTimeout(timer); opts.signal.removeEventListener('abort', onAbort); reject(e); },
    };
  });
  // Avoid an unhandled rejection if the caller has not started waiting yet.
  outcome.catch(() => undefined);

  return {
    redirectUri: `http://${host}:${port}${CALLBACK_PATH}`,
    port,
    waitForCode: (state) => {
      expected = state;
      return outcome!;
    },
    finish(o) {
      const res = pending;
      pending = undefined;
      if (!res) return;
      if (o.ok) page(res, 200, 'Dropbox connected', o.message, true, o.advice ?? []);
      else page(res, 400, 'Dropbox login failed', o.message, false, o.advice ?? []);
    },
    close: () => new Promise<void>((resolve) => {
      // Nothing may keep the process alive once the login is over (the timeout timer, the abort listener).
      stopTimer();
      done = true;
      if (pending) page(pending, 500, 'Dropbox login stopped', 'dropkey stopped before finishing. Return to the terminal.', false);
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Error messages are written to follow "dropkey: " in a terminal (lower-case start, no full stop); on the page each
 * stands alone, so it gets a capital and an ending. A line that is a command ("Run: dropkey ...") is left as it is.
 */
export function asSentence(text: string): string {
  const t = text.trim();
  if (t === '' || /^Run: /.test(t)) return t;
  const capital = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?:)]$/.test(capital) ? capital : `${capital}.`;
}

function page(res: ServerResponse, status: number, title: string, message: string, ok: boolean, advice: string[] = []): void {
  const color = ok ? '#0a7a32' : '#b00020';
  // The server's one escaping function (hono's html helper): every value below is escaped unless it is markup.
  const body = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dropkey: ${title}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1e1919}
h1{color:${color};font-size:1.5rem}</style></head>
<body><h1 id="result" data-ok="${String(ok)}">${raw(ok ? '&#10003; ' : '&#10007; ')}${title}</h1>
<p id="message">${asSentence(message)}</p>
${advice.map((line) => html`<p class="advice">${asSentence(line)}</p>\n`)}<p>${ok ? 'You can close this tab and return to the terminal.' : 'Return to the terminal for details.'}</p></body></html>
`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // The page never needs scripts or external resources.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
    'referrer-policy': 'no-referrer',
  });
  res.end(body.toString());
}
