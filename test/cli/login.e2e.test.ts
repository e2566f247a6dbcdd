/**
 * `dropkey login` end to end: the built CLI as a child process, the emulator as Dropbox, and the test playing the
 * user's browser over HTTP (GET the consent page, POST Allow, follow the redirect to the CLI's callback server).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { driveConsent } from '../helpers/consent.js';
import { assertNoSecrets, authorizeUrlFrom, CliEnv, collect, waitForOutput } from './cli-helpers.js';
import { NO_TTY, spawnOnTerminal } from './tty.js';

let t: CliEnv;
before(async () => {
  t = await CliEnv.create();
});
after(async () => {
  await t?.close();
});

test('login: loopback flow with PKCE and offline access, consent driven over HTTP', async () => {
  const app = await t.addApp('loop');
  await t.emu.control.createAccount({ email: 'loop-user@example.com' });
  const child = t.spawn(['login', '--connection', 'loop', '--app', 'loop', '--port', '0', '--no-browser']);
  child.stdin.end();
  const done = collect(child);
  const [line] = await waitForOutput(child.stderr, /http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?\S+/);
  const url = new URL(line);
  assert.equal(url.searchParams.get('client_id'), app.key);
  assert.equal(url.searchParams.get('response_type'), 'code');
  assert.equal(url.searchParams.get('token_access_type'), 'offline');
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.match(url.searchParams.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
  assert.ok((url.searchParams.get('state') ?? '').length >= 32);
  const redirectUri = new URL(url.searchParams.get('redirect_uri')!);
  assert.equal(redirectUri.hostname, '127.0.0.1');
  assert.equal(redirectUri.pathname, '/callback');

  const consent = await driveConsent(url.href, { account: 'loop-user@example.com' });
  assert.ok(consent.location, 'the consent page redirects back to the CLI');
  assert.ok(consent.location.startsWith(redirectUri.href), consent.location);
  const page = await fetch(consent.location);
  const html = await page.text();
  assert.equal(page.status, 200);
  assert.match(html, /Dropbox connected/);
  assert.match(html, /loop-user@example\.com/);

  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Connected "loop": loop-user@example\.com/);
  assertNoSecrets(r.stdout + r.stderr, [app.secret], 'login output');

  const list = await t.run(['list', '--json']);
  const conns = JSON.parse(list.stdout) as Array<{ name: string; email: string; refreshable: boolean; state: string }>;
  const c = conns.find((x) => x.name === 'loop');
  assert.equal(c?.email, 'loop-user@example.com');
  assert.equal(c?.refreshable, true);
  assert.equal(c?.state, 'active');
  const token = await t.run(['token', '--connection', 'loop']);
  assert.equal(token.code, 0, token.stderr);
  assert.match(token.stdout, /^sl\.\S+\n$/);
});

test('login --no-redirect: the user pastes the code Dropbox shows (#auth-code)', async () => {
  await t.addApp('paste');
  await t.emu.control.createAccount({ email: 'paste-user@example.com' });
  const child = t.spawn(['login', '--connection', 'pasted', '--app', 'paste', '--no-redirect']);
  const done = collect(child);
  const [line] = await waitForOutput(child.stderr, /http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?\S+/);
  const url = new URL(line);
  assert.equal(url.searchParams.get('redirect_uri'), null, 'no redirect_uri in the no-redirect flow');
  assert.equal(url.searchParams.get('token_access_type'), 'offline');
  const consent = await driveConsent(url.href, { account: 'paste-user@example.com' });
  const code = /<code id="auth-code">([^<]+)<\/code>/.exec(consent.finalHtml)?.[1];
  assert.ok(code, `the emulator shows the code: ${consent.finalHtml.slice(0, 300)}`);
  child.stdin.end(`  ${code}  \n`); // pasted with stray spaces
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Connected "pasted": paste-user@example\.com/);
  assertNoSecrets(r.stderr + r.stdout, [code], 'login output');
});

test('login: Cancel on the consent page fails clearly and stores nothing', async () => {
  await t.addApp('deny');
  const child = t.spawn(['login', '--connection', 'denied', '--app', 'deny', '--port', '0', '--no-browser']);
  child.stdin.end();
  const done = collect(child);
  const [line] = await waitForOutput(child.stderr, /http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?\S+/);
  const consent = await driveConsent(line, { button: /cancel|deny/i });
  assert.ok(consent.location);
  assert.equal(new URL(consent.location).searchParams.get('error'), 'access_denied');
  const page = await fetch(consent.location);
  assert.equal(page.status, 400);
  assert.match(await page.text(), /login failed/i);
  const r = await done;
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cancelled \(access_denied\); nothing was saved/);
  assert.match(r.stderr, /dropkey login/);
  const list = JSON.parse((await t.run(['list', '--json'])).stdout) as Array<{ name: string }>;
  assert.ok(!list.some((c) => c.name === 'denied'));
});

test('login: a redirect with the wrong or no state is refused with a 400 page and the login keeps waiting', async () => {
  await t.addApp('csrf');
  await t.emu.control.createAccount({ email: 'csrf-user@example.com' });
  const child = t.spawn(['login', '--connection', 'csrf', '--app', 'csrf', '--port', '0', '--no-browser']);
  child.stdin.end();
  const done = collect(child);
  const [line] = await waitForOutput(child.stderr, /http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?\S+/);
  const redirect = new URL(new URL(line).searchParams.get('redirect_uri')!);
  redirect.searchParams.set('code', 'forged-code');
  redirect.searchParams.set('state', 'not-the-state');
  const page = await fetch(redirect);
  assert.equal(page.status, 400);
  assert.match(await page.text(), /does not belong to this login/);
  redirect.searchParams.delete('state');
  assert.equal((await fetch(redirect)).status, 400, 'no state at all');
  // The real redirect still arrives at a listening port and finishes the login; the forged code was never used.
  const consent = await driveConsent(line, { account: 'csrf-user@example.com' });
  assert.ok(consent.location);
  assert.equal((await fetch(consent.location)).status, 200);
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Connected "csrf": csrf-user@example\.com/);
});

test('login: Ctrl-C while waiting leaves nothing half-written and exits 130', async () => {
  await t.addApp('intr');
  const child = t.spawn(['login', '--connection', 'interrupted', '--app', 'intr', '--port', '0', '--no-browser']);
  child.stdin.end();
  const done = collect(child);
  const [line] = await waitForOutput(child.stderr, /http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?\S+/);
  child.kill('SIGINT');
  const r = await done;
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /cancelled; nothing was saved/);
  // The callback server is gone too.
  const redirect = new URL(line).searchParams.get('redirect_uri')!;
  await assert.rejects(fetch(`${redirect}?code=x&state=y`));
  const list = JSON.parse((await t.run(['list', '--json'])).stdout) as Array<{ name: string }>;
  assert.ok(!list.some((c) => c.name === 'interrupted'));
});

test('login: gives up after --timeout with a clear message', async () => {
  await t.addApp('slow');
  const r = await t.run(['login', '--connection', 'slow', '--app', 'slow', '--port', '0', '--no-browser', '--timeout', '1']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no answer from the browser within 1 seconds; nothing was saved/);
  assert.match(r.stderr, /--no-redirect/);
  authorizeUrlFrom(r.stderr);
});

test('login: an unknown app and a busy port are explained', async () => {
  const unknown = await t.run(['login', '--app', 'nope', '--port', '0', '--no-browser']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /No app named "nope"/);
  assert.match(unknown.stderr, /dropkey app add/);

  const { createServer } = await import('node:net');
  const blocker = createServer();
  await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', res));
  const port = (blocker.address() as { port: number }).port;
  try {
    await t.addApp('busy');
    const busy = await t.run(['login', '--app', 'busy', '--port', String(port), '--no-browser']);
    assert.equal(busy.code, 2);
    assert.match(busy.stderr, new RegExp(`port ${port} .* already in use`));
    assert.match(busy.stderr, /--port N/);
  } finally {
    blocker.close();
  }
});

test('login with a wrong stored secret (invalid_client): the fix updates the app\'s secret, and the browser page reads as sentences', async () => {
  const app = await t.emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  const added = await t.run(['app', 'add', '--name', 'stale', '--key', app.key, '--secret', '-', '--no-check'], { stdin: 'an-old-secret\n' });
  assert.equal(added.code, 0, added.stderr);
  await t.emu.control.createAccount({ email: 'stale-user@example.com' });
  const child = t.spawn(['login', '--connection', 'stale', '--app', 'stale', '--port', '0', '--no-browser']);
  child.stdin.end();
  const done = collect(child);
  const [line] = await waitForOutput(child.stderr, /http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?\S+/);
  const consent = await driveConsent(line, { account: 'stale-user@example.com' });
  assert.ok(consent.location);
  const res = await fetch(consent.location);
  assert.equal(res.status, 400);
  const html = await res.text();
  const paragraphs = [...html.matchAll(/<p[^>]*>([^<]*)<\/p>/g)].map((m) => m[1]!.replace(/&#39;/g, "'").replace(/&#34;|&quot;/g, '"'));
  const message = paragraphs[0]!;
  assert.match(message, /^Dropbox rejected the key or secret of app "stale" \(invalid_client\).*nothing was saved\.$/);
  assert.ok(paragraphs.some((p) => /^Copy the app secret .*then log in again\.$/.test(p)), paragraphs.join('\n'));
  assert.ok(paragraphs.includes('Run: dropkey app update --name stale --secret -'), paragraphs.join('\n'));
  for (const p of paragraphs) assert.match(p, /^[A-Z].*[.:)-]$|^Run: /, `each paragraph is a sentence of its own: ${p}`);
  assert.doesNotMatch(html, /app add/);

  const r = await done;
  assert.equal(r.code, 1);
  assert.match(r.stderr, /invalid_client/);
  assert.match(r.stderr, /Run: dropkey app update --name stale --secret -/);
  assert.doesNotMatch(r.stderr, /app add/);
  assertNoSecrets(r.stderr, ['an-old-secret', app.secret], 'login output');
  const list = JSON.parse((await t.run(['list', '--json'])).stdout) as Array<{ name: string }>;
  assert.ok(!list.some((c) => c.name === 'stale'));
});

test('login shows how long it has waited for the browser on a terminal\'s stderr only: never on stdout, never off a terminal', { skip: NO_TTY }, async () => {
  await t.addApp('prog');
  await t.emu.control.createAccount({ email: 'prog-user@example.com' });
  const onTty = spawnOnTerminal(t, ['login', '--connection', 'prog-tty', '--app', 'prog', '--port', '0', '--no-browser']);
  const offTty = t.spawn(['login', '--connection', 'prog-pipe', '--app', 'prog', '--port', '0', '--no-browser']);
  onTty.stdin.end();
  offTty.stdin.end();
  const ttyDone = collect(onTty);
  const pipeDone = collect(offTty);
  // Listen to both from the start: output that came before a listener would be missed.
  const ttyUrl = waitForOutput(onTty.stderr, /http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?[^\s\u001b]+/);
  const pipeUrl = waitForOutput(offTty.stderr, /http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?\S+/);
  const progress = waitForOutput(onTty.stderr, /Waiting for the browser\.\.\. [1-9] s \(gives up in 4 min \d+ s\)/);
  const [[ttyLine], [pipeLine]] = await Promise.all([ttyUrl, pipeUrl]);
  // Both have waited more than a second once the terminal shows it.
  await progress;
  for (const line of [ttyLine, pipeLine]) {
    const consent = await driveConsent(line, { account: 'prog-user@example.com' });
    await (await fetch(consent.location!)).text();
  }
  const tty = await ttyDone;
  const pipe = await pipeDone;
  assert.equal(tty.code, 0, tty.stderr);
  assert.equal(pipe.code, 0, pipe.stderr);
  assert.match(tty.stderr, /\r\u001b\[KWaiting for the browser/);
  assert.match(tty.stdout, /Connected "prog-tty"/);
  assert.doesNotMatch(tty.stdout, /Waiting for the browser|\u001b/, 'never on stdout');
  assert.doesNotMatch(pipe.stderr + pipe.stdout, /Waiting for the browser\.\.\.|\u001b\[K/, 'not a terminal: no progress');
});
