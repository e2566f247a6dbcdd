/**
 * The web UI in a real browser (docs/web-ui.md): playwright-core drives Debian's chromium against a
 * listening dropkey server wired to the emulator. First-run setup, sign out and in, add an app, click Connect,
 * approve in the popup, see the connection appear with the account's email without a reload, open its detail
 * page, test it, revoke it. A second test blocks popups and checks the full-page redirect fallback.
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
});
