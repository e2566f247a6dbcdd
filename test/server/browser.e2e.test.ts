/**
 * The web UI in a real browser (docs/web-ui.md): playwright-core drives Debian's chromium against a
 * listening dropkey server wired to the emulator. First-run setup, sign out and in, add an app, click Connect,
 * approve in the popup, see the connection appear with the account's email without a reload, open its detail
 * page, test it, revoke it. A second test blocks popups and checks the full-page redirect fallback. Others: the
 * "waiting for Dropbox" state while the popup is open and what a closed popup says; the pages the owner of a
 * connect link sees (landing, consent result, errors, the 404), in the same layout and with no command-line advice;
 * every admin page on a phone-sized screen without horizontal scrolling.
 * Screenshots of each step go to .test-artifacts/browser/ (gitignored).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { DEMO_APP_KEY, DEMO_APP_SECRET } from '../../src/emulator/seed.js';
import { bind, type Listener } from '../../src/server/node.js';
import { ensureSetupToken } from '../../src/server/setup.js';
import { makeServerRig, type ServerRig } from './rig.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : 'chromium not installed (.ci/run installs it with apt-get)';
if (skip) console.log(`# skipped: ${skip}`);
const SHOTS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '.test-artifacts', 'browser');

const EMAIL = 'admin@example.com';
const PASSWORD = 'a long admin password';
const OWNER = 'browser.owner@example.com';
const OWNER2 = 'redirect.owner@example.com';

let rig: ServerRig;
let listener: Listener & { setApp(app: ServerRig['app']): void };
let browser: Browser;
let base: string;
let emuApp: { key: string; secret: string };

/** Console errors and uncaught exceptions (a CSP violation shows up as a console error). */
function watchErrors(page: Page, into: string[]): void {
  page.on('console', (m) => {
    if (m.type() === 'error') into.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => into.push(`${page.url()}: ${e.message}`));
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}


async function signedIn(context: BrowserContext, errors: string[]): Promise<Page> {
  const page = await context.newPage();
  watchErrors(page, errors);
  await page.goto(`${base}/signin`);
  await page.getByLabel('Email').fill(EMAIL);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/connections`);
  return page;
}

/** What a page an account owner sees must look like: the one layout, no admin navigation, no command to run. */
async function assertOwnerPage(page: Page): Promise<void> {
  assert.equal(await page.locator('link[rel="stylesheet"][href="/ui/assets/app.css"]').count(), 1, 'the UI stylesheet');
  assert.equal(await page.locator('header.top .brand').innerText(), 'dropkey');
  assert.equal(await page.locator('nav[aria-label="Main"]').count(), 0, 'no admin navigation');
  const text = await page.locator('body').innerText();
  assert.doesNotMatch(text, /\bdropkey (login|import|token|doctor|app|apikey|serve|revoke|list|link|keys)\b/, 'no CLI advice');
  // An error page ends with its code for support (small print); the sentences above it speak plain words.
  const words = text.replace(/Error \d{3} · DROPKEY_[A-Z_]+\s*$/, '');
  assert.doesNotMatch(words, /DROPKEY_[A-Z_]+/, 'no error code in the sentences');
  assert.equal(await page.locator('a.fix').count(), 0, 'no links to admin pages');
}

/** Nothing wider than the screen: the page scrolls down, never sideways. */
async function assertFits(page: Page, width: number): Promise<void> {
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= width, `${page.url()} is ${wide}px wide on a ${width}px screen`);
}

describe('web UI in chromium', { skip }, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    listener = await bind(0, '127.0.0.1');
    base = `http://127.0.0.1:${listener.port}`;
    rig = await makeServerRig({ config: { publicUrl: base } });
    listener.setApp(rig.app);
    // The emulator's demo app: its redirect URIs allow http://127.0.0.1 on any port and path (docs/emulator.md
    // "Redirect URIs"), so the server's <public-url>/oauth/callback fits.
    emuApp = { key: DEMO_APP_KEY, secret: DEMO_APP_SECRET };
    await rig.emu.control.createAccount({ email: OWNER, given_name: 'Bea', surname: 'Owner' });
    await rig.emu.control.createAccount({ email: OWNER2, given_name: 'Red', surname: 'Irect' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
    await listener?.close(1000);
    await rig?.close();
  });

  test('setup, sign in, add an app, connect in a popup, see it listed, open it, revoke it', async () => {
    const errors: string[] = [];
    const context: BrowserContext = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
    watchErrors(page, errors);

    // First run: the setup link `dropkey serve` prints.
    const setupUrl = (await ensureSetupToken(rig.app.services))!;
    await page.goto(setupUrl);
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel(/^Password/).first().fill(PASSWORD);
    await page.getByLabel('Password again').fill(PASSWORD);
    await shot(page, '01-setup');
    await page.getByRole('button', { name: 'Create admin' }).click();
    await page.waitForURL(`${base}/apps?welcome=1`);

    // Sign out and in again.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${base}/signin?signed_out=1`);
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill('wrong password!');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await assert.doesNotReject(page.getByText('Wrong email or password.').waitFor());
    // The browser logs the intentional 401 as a failed resource load; only that one is expected.
    const i = errors.findIndex((e) => e.includes('/signin: Failed to load resource') && e.includes('401'));
    assert.ok(i >= 0, 'the wrong password answered 401');
    errors.splice(i, 1);
    await page.getByLabel('Password').fill(PASSWORD);
    await shot(page, '02-signin');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/connections`);

    // Add the app.
    await page.getByRole('navigation').getByRole('link', { name: 'Apps' }).click();
    await page.getByLabel('Name in dropkey').fill('main');
    await page.getByLabel('App key').fill(emuApp.key);
    await page.getByLabel(/App secret/).fill(emuApp.secret);
    await shot(page, '03-add-app');
    await page.getByRole('button', { name: 'Add app' }).click();
    await page.waitForURL(`${base}/apps/main?added=1`);
    assert.equal(await page.locator('#redirect-uri').inputValue(), `${base}/oauth/callback`);
    assert.equal(await page.locator('#app-secret').inputValue(), '', 'the secret is never sent back');
    assert.equal(await page.content().then((h) => h.includes(emuApp.secret)), false);
    await page.locator('[data-copy="#redirect-uri"]').click();
    await page.getByRole('button', { name: 'Copied' }).waitFor();
    await page.getByText('App Console checklist').click();
    await shot(page, '04-app-page');

    // Connect in a popup.
    await page.getByRole('navigation').getByRole('link', { name: 'Connections' }).click();
    await page.waitForURL(`${base}/connections`);
    await page.evaluate(() => ((window as unknown as { noReload: boolean }).noReload = true));
    await page.locator('form[data-popup-connect]').getByLabel('Connection name').fill('team_drive');
    const [popup] = await Promise.all([context.waitForEvent('page'), page.getByRole('button', { name: 'Connect Dropbox' }).click()]);
    watchErrors(popup, errors);
    await popup.waitForURL(/\/oauth2\/authorize\?/);
    assert.ok(popup.url().startsWith(`${rig.emu.url}/oauth2/authorize?`), popup.url());
    await popup.getByLabel(new RegExp(OWNER.replace(/\./g, '\\.'))).check();
    await shot(popup, '05-popup-consent');
    const closed = popup.waitForEvent('close');
    await popup.getByRole('button', { name: 'Allow' }).click();
    await closed;

    const row = page.locator('tr[data-connection="team_drive"]');
    await row.locator('td.email', { hasText: OWNER }).waitFor();
    await page.getByText(`Dropbox is connected as "team_drive" (${OWNER}).`).waitFor();
    assert.equal(await page.evaluate(() => (window as unknown as { noReload?: boolean }).noReload), true, 'the list updated without a reload');
    assert.match(await row.innerText(), /active/);
    await shot(page, '06-connected');

    // Detail page.
    await row.getByRole('link', { name: 'team_drive' }).click();
    await page.waitForURL(`${base}/connections/team_drive`);
    const facts = await page.locator('dl.facts').innerText();
    assert.ok(facts.includes(OWNER), facts);
    assert.match(facts, /Bea Owner/);
    assert.match(facts, /files\.content\.read/);
    const countdown = page.locator('dl.facts time.countdown');
    assert.match(await countdown.innerText(), /^in \d+ h \d+ min$/);
    await page.getByRole('button', { name: 'Test' }).click();
    await page.getByText(`Dropbox answered: Bea Owner <${OWNER}>.`).waitFor();
    await shot(page, '07-detail');

    // Revoke (the script asks for confirmation).
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Revoke' }).click();
    await page.waitForURL(`${base}/connections?revoked=team_drive`);
    await page.getByText('Connection "team_drive" was revoked and deleted.').waitFor();
    assert.equal(await page.locator('tr[data-connection="team_drive"]').count(), 0);
    await shot(page, '08-revoked');
    await assert.rejects(rig.dk.get('team_drive'), /team_drive/);
    assert.ok((await rig.emu.control.requests()).some((r) => r.path === '/2/auth/token/revoke'));

    assert.deepEqual(errors, [], 'no console errors or CSP violations');
    await context.close();
  });

  test('popup blocked: the Connect button falls back to a full-page redirect through Dropbox and back', async () => {
    const errors: string[] = [];
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    context.setDefaultTimeout(15_000);
    // What a popup blocker does: window.open returns null.
    await context.addInitScript(() => {
      window.open = () => null;
    });
    const page = await context.newPage();
    watchErrors(page, errors);
    await page.goto(`${base}/signin`);
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/connections`);
    await page.locator('form[data-popup-connect]').getByLabel('Connection name').fill('redirected');
    await page.getByRole('button', { name: 'Connect Dropbox' }).click();
    await page.waitForURL(/\/oauth2\/authorize\?/);
    await page.getByLabel(new RegExp(OWNER2.replace(/\./g, '\\.'))).check();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(`${base}/connections/redirected?connected=redirected`);
    await page.getByText('Dropbox is connected as "redirected".').waitFor();
    assert.ok((await page.locator('dl.facts').innerText()).includes(OWNER2));
    await shot(page, '09-redirect-fallback');
    assert.deepEqual(errors, []);
    await context.close();
  });
  test('waiting for Dropbox while the popup is open; closing it without connecting says so', async () => {
    const errors: string[] = [];
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    context.setDefaultTimeout(15_000);
    const page = await signedIn(context, errors);
    await page.locator('form[data-popup-connect]').getByLabel('Connection name').fill('abandoned');
    const [popup] = await Promise.all([context.waitForEvent('page'), page.getByRole('button', { name: 'Connect Dropbox' }).click()]);
    await popup.waitForURL(/\/oauth2\/authorize\?/);
    const waiting = page.locator('[data-waiting]');
    await waiting.waitFor();
    assert.match(await waiting.innerText(), /Waiting for Dropbox… Sign in and click Allow in the Dropbox window/);
    assert.equal(await page.getByRole('button', { name: 'Connect Dropbox' }).isDisabled(), true, 'no second window meanwhile');
    await shot(page, '10-waiting-for-dropbox');
    await popup.close();
    await page.getByText('The Dropbox window was closed before the connection was made.').waitFor();
    assert.equal(await waiting.count(), 0, 'the waiting line is gone');
    assert.equal(await page.getByRole('button', { name: 'Connect Dropbox' }).isDisabled(), false);
    assert.equal(await page.locator('tr[data-connection="abandoned"]').count(), 0);
    await shot(page, '11-popup-closed');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('the owner of a connect link: landing page, cancelled consent, connected, used link, 404, all in the layout', async () => {
    const errors: string[] = [];
    const admin = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    admin.setDefaultTimeout(15_000);
    const page = await signedIn(admin, errors);
    await page.getByLabel('Connection name').last().fill('owned_by_link');
    await page.getByRole('button', { name: 'Create connect link' }).click();
    const url = await page.locator('#link-url').inputValue();
    await shot(page, '12-connect-link-created');
    await admin.close();

    // The owner has no session and no CLI.
    const owner = await browser.newContext({ viewport: { width: 1000, height: 800 } });
    owner.setDefaultTimeout(15_000);
    const o = await owner.newPage();
    watchErrors(o, errors);
    await o.goto(url);
    await o.getByRole('heading', { name: 'Connect your Dropbox' }).waitFor();
    await assertOwnerPage(o);
    await shot(o, '13-owner-landing');

    // Cancel at Dropbox: an error page in words, and the link still works.
    await o.getByRole('button', { name: 'Connect Dropbox' }).click();
    await o.waitForURL(/\/oauth2\/authorize\?/);
    await o.getByRole('button', { name: 'Cancel' }).click();
    await o.waitForURL(/\/oauth\/callback\?/);
    await assertOwnerPage(o);
    assert.match(await o.locator('h1').innerText(), /./);
    await shot(o, '14-owner-cancelled');
    const cancelled = errors.findIndex((e) => e.includes('/oauth/callback') && e.includes('Failed to load resource'));
    if (cancelled >= 0) errors.splice(cancelled, 1); // the error page's own 4xx status

    await o.goto(url);
    await o.getByRole('button', { name: 'Connect Dropbox' }).click();
    await o.waitForURL(/\/oauth2\/authorize\?/);
    await o.getByLabel(new RegExp(OWNER.replace(/\./g, '\\.'))).check();
    await o.getByRole('button', { name: 'Allow' }).click();
    await o.getByRole('heading', { name: `Dropbox is connected as ${OWNER}.` }).waitFor();
    await assertOwnerPage(o);
    await shot(o, '15-owner-connected');
    assert.equal((await rig.dk.get('owned_by_link')).email, OWNER);

    // The link is used up.
    const used = await o.goto(url);
    assert.equal(used!.status(), 410);
    await o.getByRole('heading', { name: 'This connect link was already used.' }).waitFor();
    assert.match(await o.locator('body').innerText(), /Ask the admin who sent it for a new one/);
    await assertOwnerPage(o);
    await shot(o, '16-owner-link-used');

    const missing = await o.goto(`${base}/no/such/page`);
    assert.equal(missing!.status(), 404);
    await o.getByRole('heading', { name: /Nothing here/ }).waitFor();
    assert.equal(await o.locator('link[rel="stylesheet"][href="/ui/assets/app.css"]').count(), 1);
    assert.equal(await o.locator('nav[aria-label="Main"]').count(), 0);
    await shot(o, '17-not-found');
    const expected = errors.filter((e) => /Failed to load resource.*(410|404)/.test(e));
    assert.deepEqual(errors.filter((e) => !expected.includes(e)), []);
    await owner.close();
  });

  test('a phone-sized screen: every admin page fits 390 px without scrolling sideways', async () => {
    const errors: string[] = [];
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    context.setDefaultTimeout(15_000);
    const page = await signedIn(context, errors);
    // A key, so the key and audit tables have rows.
    await page.goto(`${base}/api-keys`);
    await page.getByLabel(/^Name/).fill('phone-key');
    await page.getByLabel('All connections, including future ones').check();
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.locator('#new-key').waitFor();
    const pages: [string, string][] = [
      ['/connections', '20-phone-connections'],
      ['/connections/owned_by_link', '21-phone-connection'],
      ['/apps', '22-phone-apps'],
      ['/apps/main', '23-phone-app'],
      ['/api-keys', '24-phone-api-keys'],
      ['/audit', '25-phone-audit'],
      ['/webhooks', '26-phone-webhooks'],
      ['/master-key', '27-phone-master-key'],
    ];
    for (const [path, name] of pages) {
      await page.goto(`${base}${path}`);
      await assertFits(page, 390);
      await shot(page, name);
    }
    // On a phone each table row is a card whose cells carry their column's name.
    await page.goto(`${base}/connections`);
    const label = await page.locator('tr[data-connection="owned_by_link"] td[data-label="Account"]').evaluate((el) => getComputedStyle(el, '::before').content);
    assert.equal(label, '"Account"');
    // The audit log wraps between words: no cell is squeezed to a letter per line.
    await page.goto(`${base}/audit`);
    const narrowest = await page.locator('table.audit td code').evaluateAll((els) => Math.min(...els.map((e) => e.getBoundingClientRect().width)));
    assert.ok(narrowest > 40, `an action name is ${narrowest}px wide`);
    assert.deepEqual(errors, []);
    await context.close();
  });
});
