#!/usr/bin/env node
/**
 * The web UI's connections page at 100, 1,000 and 10,000 connections (measured only): the HTML size of the page
 * (and of a search result page), the headless Chromium load time, and how busy the page keeps the browser's
 * main thread afterwards (its countdowns) over --idle-s seconds. Goal: every page under 100 KB at any N.
 *
 *   npm run build && node bench/ui-page.mjs [--counts 100,1000,10000] [--loads 5] [--idle-s 5] [--database-url URL]
 *
 * One `dropkey serve` on a fresh SQLite home (or the PostgreSQL database of --database-url, schema bench_ui_<random>,
 * dropped afterwards); connections are written straight to the store between the sizes (each size adds to the
 * previous one). Needs /usr/bin/chromium (Debian's package) and playwright-core. Logs go to stderr; one JSON line per
 * size on stdout, then a summary line. Exit status 1 when a page is 100 KB or more.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { log, machine, round, startChild, stop } from './lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const { values } = parseArgs({
  options: {
    counts: { type: 'string', default: '100,1000,10000' },
    loads: { type: 'string', default: '5' },
    'idle-s': { type: 'string', default: '5' },
    'database-url': { type: 'string' },
  },
});
const COUNTS = values.counts.split(',').map(Number);
const LOADS = Number(values.loads);
const IDLE_S = Number(values['idle-s']);
if (!COUNTS.every((n) => Number.isInteger(n) && n > 0) || COUNTS.some((n, i) => i > 0 && n <= COUNTS[i - 1])) {
  throw new Error('--counts must be increasing positive whole numbers, e.g. 100,1000,10000');
}
if (!Number.isInteger(LOADS) || LOADS <= 0 || !(IDLE_S > 0)) throw new Error('--loads and --idle-s must be positive');
const GOAL = { page_bytes_max: 100 * 1024 };
const EMAIL = 'bench@example.com';
const PASSWORD = 'a bench admin password';

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  if (!existsSync(CHROMIUM)) {
    log(`skipped: ${CHROMIUM} is not installed (apt-get install -y chromium)`);
    process.stdout.write(`${JSON.stringify({ bench: 'ui-page', skipped: 'chromium not installed' })}\n`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const { openStores } = await import(`${root}dist/store/index.js`);
  const { hashPassword } = await import(`${root}dist/server/security/secrets.js`);
  const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-ui-'));
  const masterKey = randomBytes(32).toString('base64');
  let databaseUrl = values['database-url'];
  let schema;
  if (databaseUrl) {
    schema = `bench_ui_${randomBytes(4).toString('hex')}`;
    const u = new URL(databaseUrl);
    u.searchParams.set('schema', schema);
    databaseUrl = u.toString();
  }
  const stores = await openStores({ home, masterKey, ...(databaseUrl ? { databaseUrl } : {}) });
  const children = [];
  let browser;
  try {
    const now = Date.now();
    await stores.core.createApp({ name: 'main', key: 'benchappkey', secret: 'bench-app-secret', scopes: ['files.content.read'], team: false, access: 'full' });
    await stores.server.createAdmin({ email: EMAIL, passwordHash: await hashPassword(PASSWORD) }, now);
    const env = {
      DROPKEY_HOME: home,
      DROPKEY_MASTER_KEY: masterKey,
      DROPKEY_LOG_LEVEL: 'warn',
      // Nothing here talks to Dropbox: a closed loopback port, so a stray call fails at once.
      DROPKEY_DROPBOX_URL: 'http://127.0.0.1:9',
      ...(databaseUrl ? { DROPKEY_DATABASE_URL: databaseUrl } : {}),
    };
    const serve = await startChild(root, ['dist/cli/main.js', 'serve', '--port', '0'], env, /^dropkey serve listening on (http:\/\/\S+)$/);
    children.push(serve.child);
    const base = serve.match[1];
    let serveErr = '';
    serve.child.stderr.on('data', (d) => {
      if (serveErr.length < 20_000) serveErr += d;
    });
    serve.child.once('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGTERM') log(`dropkey serve exited (${code ?? signal}): ${serveErr.slice(-2000)}`);
    });

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${base}/signin`);
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/connections`);
    const cookie = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const taskSeconds = async () => (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === 'TaskDuration').value;

    const results = [];
    let have = 0;
    for (const n of COUNTS) {
      const t0 = performance.now();
      for (let i = have; i < n; i++) {
        await stores.core.createConnection({
          name: `conn-${String(i).padStart(6, '0')}`,
          app: 'main',
          accountId: `dbid:bench-${i}`,
          teamId: i % 50 === 0 ? 'dbtid:bench-team' : null,
          email: `owner${i}@example.com`,
          displayName: `Owner ${i}`,
          teamName: i % 50 === 0 ? 'Bench Team' : null,
          scopes: ['files.content.read'],
          accessToken: `sl.bench-${i}-${randomBytes(24).toString('base64url')}`,
          accessTokenExpiresAt: now + 3600_000 + (i % 3600) * 1000,
          refreshToken: `bench-refresh-${i}-${randomBytes(24).toString('base64url')}`,
          state: i % 97 === 0 ? 'needs_reauth' : 'active',
          lastError: null,
          lastRefreshAt: null,
        });
      }
      have = n;
      log(`${n} connections stored (${((performance.now() - t0) / 1000).toFixed(1)} s to add)`);

      const sizeOf = async (path, headers) => {
        if (serve.child.exitCode !== null) throw new Error(`dropkey serve exited (${serve.child.exitCode})`);
        // One retry: after the long insert, a kept-alive socket the server already closed may be picked first.
        const get = () => fetch(`${base}${path}`, { headers });
        const r = await get().catch((err) => {
          log(`GET ${path}: ${err.message} (${err.cause?.message ?? 'no cause'}); trying once more`);
          return get();
        });
        if (r.status !== 200) throw new Error(`${path}: HTTP ${r.status}`);
        return Buffer.byteLength(await r.text());
      };
      const pageBytes = await sizeOf('/connections', { Cookie: cookie });
      const searchBytes = await sizeOf('/connections?q=owner1', { Cookie: cookie });
      const loads = [];
      for (let k = 0; k < LOADS; k++) {
        await page.goto(`${base}/connections`, { waitUntil: 'load' });
        loads.push(await page.evaluate(() => performance.getEntriesByType('navigation')[0].loadEventEnd));
      }
      // The loaded page left alone: how much of the time its main thread works (countdowns, timers).
      const busy0 = await taskSeconds();
      await new Promise((r) => setTimeout(r, IDLE_S * 1000));
      const busy = (await taskSeconds()) - busy0;
      const rows = await page.locator('tr[data-connection]').count();
      const line = {
        bench: 'ui-page',
        store: stores.kind,
        connections: n,
        page_bytes: pageBytes,
        search_page_bytes: searchBytes,
        rows_per_page: rows,
        load_ms_median: round(median(loads), 1),
        load_ms_max: round(Math.max(...loads), 1),
        idle_main_thread_busy_ratio: round(busy / IDLE_S, 4),
        met: pageBytes < GOAL.page_bytes_max && searchBytes < GOAL.page_bytes_max,
      };
      log(`${n}: page ${pageBytes} B (search ${searchBytes} B), ${rows} rows, load ${line.load_ms_median} ms median, main thread busy ${(line.idle_main_thread_busy_ratio * 100).toFixed(2)}% idle`);
      process.stdout.write(`${JSON.stringify(line)}\n`);
      results.push(line);
    }
    const summary = { bench: 'ui-page', summary: true, store: stores.kind, goal: GOAL, met: results.every((r) => r.met), results, ...machine(), node: process.version };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    if (!summary.met) process.exitCode = 1;
  } finally {
    await browser?.close();
    for (const c of children) await stop(c);
    if (schema) {
      const pg = (await import('pg')).default;
      const client = new pg.Client({ connectionString: values['database-url'] });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => client.end());
    }
    await stores.close();
    rmSync(home, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
