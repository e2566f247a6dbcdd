/**
 * First run, sign-in and sign-out. The setup page creates the first admin with the one-time token that
 * `dropkey serve` prints (src/server/setup.ts: the token is consumed in the same transaction). Sign-in is rate
 * limited per client IP (security/rate-limit.ts) and takes the same time for unknown emails as for wrong
 * passwords (dummy scrypt hash), so it reveals neither which emails exist nor, through timing, which do.
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../context.js';
import { clientIp } from '../context.js';
import { dummyPasswordHash, sha256Hex, verifyPassword } from '../security/secrets.js';
import type { ServerServices } from '../services.js';
import { createFirstAdmin } from '../setup.js';
import { html } from '../html.js';
import { errorText, field, guardPost, isUserError, readForm, safeNext } from './kit.js';
import { type Notice, page } from './layout.js';
import { checkPreSessionCsrf, endSession, preSessionToken, readSession, startSession } from './session.js';

function setupForm(token: string, csrf: string, email: string, notices: Notice[]): string {
  return page({
    title: 'Set up dropkey',
    notices,
    body: html`<section class="narrow">
<h1>Set up dropkey</h1>
<p>Create the first admin account. You will use it to sign in to this page.</p>
<form method="post" action="/setup" class="stack">
<input type="hidden" name="_csrf" value="${csrf}">
<input type="hidden" name="token" value="${token}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="${email}">
<label for="password">Password <small>(at least 12 characters)</small></label>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="12" required>
<label for="password2">Password again</label>
<input id="password2" name="password2" type="password" autocomplete="new-password" minlength="12" required>
<button type="submit" class="primary">Create admin</button>
</form></section>`,
  });
}

function signinForm(csrf: string, next: string | undefined, email: string, notices: Notice[], noAdmin: boolean): string {
  const body = noAdmin
    ? html`<section class="narrow"><h1>dropkey is not set up yet</h1>
<p>No admin exists. Open the setup link that the server printed in its terminal when it started
(it looks like <code>/setup?token=...</code>). Restarting the server prints a new one.</p></section>`
    : html`<section class="narrow">
<h1>Sign in</h1>
<form method="post" action="/signin" class="stack">
<input type="hidden" name="_csrf" value="${csrf}">
${next ? html`<input type="hidden" name="next" value="${next}">` : ''}
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="${email}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" class="primary">Sign in</button>
</form></section>`;
  return page({ title: noAdmin ? 'Set up dropkey' : 'Sign in', body, notices });
}

export function authRoutes(r: Hono<AppEnv>, s: ServerServices): void {
  r.get('/', async (c) => {
    if (await readSession(c, s)) return c.redirect('/connections', 303);
    return c.redirect('/signin', 303);
  });

  r.get('/setup', async (c) => {
    c.header('Cache-Control', 'no-store');
    if ((await s.serverStore.countAdmins()) > 0) return c.redirect('/signin', 303);
    const token = c.req.query('token') ?? '';
    const valid = /^[A-Za-z0-9_-]{20,100}$/.test(token) && (await s.serverStore.checkSetupToken(sha256Hex(token), s.clock()));
    if (!valid) {
      return c.html(
        page({
          title: 'Set up dropkey',
          body: html`<section class="narrow"><h1>This setup link is wrong or expired</h1>
<p>Restart the server: while no admin exists it prints a new setup link.</p></section>`,
        }),
        401,
      );
    }
    return c.html(setupForm(token, preSessionToken(c, s), '', []));
  });

  r.post('/setup', async (c) => {
    c.header('Cache-Control', 'no-store');
    s.limits.check('setup', clientIp(c, s.config.trustProxy));
    const form = await readForm(c);
    checkPreSessionCsrf(c, s, form);
    const token = field(form, 'token');
    const email = field(form, 'email');
    const password = typeof form.get('password') === 'string' ? (form.get('password') as string) : '';
    const again = typeof form.get('password2') === 'string' ? (form.get('password2') as string) : '';
    if (password !== again) {
      return c.html(setupForm(token, preSessionToken(c, s), email, [{ kind: 'error', text: 'The two passwords differ. Type them again.' }]), 400);
    }
    let admin;
    try {
      admin = await createFirstAdmin(s, { token, email, password });
    } catch (err) {
      if (isUserError(err)) return c.html(setupForm(token, preSessionToken(c, s), email, [{ kind: 'error', text: errorText(err) }]), 400);
      throw err;
    }
    await startSession(c, s, admin);
    return c.redirect('/apps?welcome=1', 303);
  });

  r.get('/signin', async (c) => {
    c.header('Cache-Control', 'no-store');
    const next = safeNext(c.req.query('next'));
    if (await readSession(c, s)) return c.redirect(next ?? '/connections', 303);
    const noAdmin = (await s.serverStore.countAdmins()) === 0;
    const notices: Notice[] = c.req.query('signed_out') ? [{ kind: 'info', text: 'You are signed out.' }] : [];
    return c.html(signinForm(preSessionToken(c, s), next, '', notices, noAdmin));
  });

  r.post('/signin', async (c) => {
    c.header('Cache-Control', 'no-store');
    const ip = clientIp(c, s.config.trustProxy);
    s.limits.check('sign-in', ip);
    const form = await readForm(c);
    checkPreSessionCsrf(c, s, form);
    const email = field(form, 'email');
    const password = typeof form.get('password') === 'string' ? (form.get('password') as string) : '';
    const next = safeNext(field(form, 'next'));
    const creds = email === '' ? undefined : await s.serverStore.getAdminByEmail(email);
    // Always run scrypt, even for unknown emails, so both failures take the same time.
    const ok = (await verifyPassword(password.slice(0, 1024), creds?.passwordHash ?? (await dummyPasswordHash()))) && creds !== undefined;
    if (!ok) {
      await s.audit.write('anonymous', 'admin.sign_in_failed', email.slice(0, 100) || null, { ip });
      return c.html(signinForm(preSessionToken(c, s), next, email, [{ kind: 'error', text: 'Wrong email or password.' }], false), 401);
    }
    await s.serverStore.recordAdminLogin(creds.id, s.clock());
    const { passwordHash: _hidden, ...admin } = creds;
    await startSession(c, s, admin);
    await s.audit.write(`admin:${admin.email}`, 'admin.signed_in', admin.email, { ip });
    return c.redirect(next ?? '/connections', 303);
  });

  r.post(
    '/signout',
    guardPost(s, async (c, ui) => {
      await endSession(c, s, ui);
      return c.redirect('/signin?signed_out=1', 303);
    }),
  );
}
