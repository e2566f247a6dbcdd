/**
 * The server's entry point and its ONLY reader of environment variables:
 *   DROPKEY_HOME, DROPKEY_MASTER_KEY, DROPKEY_DATABASE_URL (store), DROPKEY_JOBS (off: no background jobs on this
 *   instance), DROPKEY_DROPBOX_URL and the per-host overrides
 *   (Dropbox hosts, see dropbox/hosts.ts), DROPKEY_PUBLIC_URL (externally visible URL), DROPKEY_LOG_LEVEL.
 * `dropkey serve` (cli/commands/serve.ts) passes its context's env and options here.
 */
import type { Writable } from 'node:stream';
import { Dropkey } from '../connections/dropkey.js';
import { dropboxUrlsFromEnv, type DropboxUrls } from '../dropbox/hosts.js';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { openStores, resolveHome } from '../store/index.js';
import type { Stores } from '../store/types.js';
import { createApp, MODULES, type ServerApp } from './app.js';
import { defaultConfig, type ServerConfig } from './deps.js';
import { ServerEvents } from './events.js';
import { createLogger } from './logger.js';
import { createServerMetrics } from './metrics.js';
import { bind, type Listener } from './node.js';
import { ensureSetupToken } from './setup.js';
import { instrumentFetch } from './upstream.js';
import { jobsModule } from './jobs/index.js';
import { createProxyModule, proxyModule } from './proxy/index.js';
import { SharedBackoffStore } from './proxy/shared-backoff.js';
import { keyRotationFor } from '../store/rotation.js';

type Env = Record<string, string | undefined>;

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/**
 * Every store `dropkey serve` needs (core, server, webhooks, locks, shared back-off, key rotation) over one
 * database handle, from the environment: the driver is the store's business (openStores picks it from the URL).
 */
export async function openServerStores(env: Env): Promise<Stores> {
  return openStores({ home: resolveHome(env), masterKey: nonEmpty(env['DROPKEY_MASTER_KEY']), databaseUrl: nonEmpty(env['DROPKEY_DATABASE_URL']) });
}

export function validatePublicUrl(value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `The public URL ${JSON.stringify(value)} is not a URL.`, { hint: 'Example: --public-url https://dropkey.example.com' });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The public URL must start with https:// (or http:// for localhost).');
  if (u.search || u.hash) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The public URL must not have a query or fragment.');
  if (u.pathname !== '/' && u.pathname !== '') {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The public URL must be an origin without a path (dropkey serves from the root).', {
      hint: 'Give your reverse proxy its own host name, e.g. https://dropkey.example.com',
    });
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
  if (u.protocol === 'http:' && !loopback) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Dropbox accepts http:// redirect URIs only for localhost and 127.0.0.1; use https:// for any other host.', {
      hint: 'Put dropkey behind a TLS-terminating reverse proxy and pass --public-url https://...',
    });
  }
  return u.origin;
}

export interface RunServerOptions {
  env: Env;
  port?: number;
  host?: string;
  publicUrl?: string;
  stdout: Writable;
  /** JSON logs go here (stdout stays for the human lines: the listening address and the setup URL). */
  logStream?: Writable;
  signal: AbortSignal;
  /** Overrides for tests (e.g. a small flush interval). */
  config?: Partial<Omit<ServerConfig, 'publicUrl'>>;
  fetch?: typeof fetch;
}

export interface RunningServer {
  url: string;
  app: ServerApp;
  listener: Listener;
  /** Resolves after a graceful shutdown (signal aborted). */
  done: Promise<void>;
}

export async function startServer(o: RunServerOptions): Promise<RunningServer> {
  const host = o.host ?? '127.0.0.1';
  const port = o.port ?? 8080;
  const urls: DropboxUrls = dropboxUrlsFromEnv(o.env);
  const explicitPublic = o.publicUrl ?? nonEmpty(o.env['DROPKEY_PUBLIC_URL']);
  if (explicitPublic) validatePublicUrl(explicitPublic);
  const logger = createLogger({ level: nonEmpty(o.env['DROPKEY_LOG_LEVEL']) ?? 'info', ...(o.logStream ? { destination: o.logStream } : {}) });
  const stores = await openServerStores(o.env);
  let listener: (Listener & { setApp(app: ServerApp): void }) | undefined;
  try {
    listener = await bind(port, host);
    const shownHost = host.includes(':') ? `[${host}]` : host;
    const localUrl = `http://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost === '[::]' ? '[::1]' : shownHost}:${listener.port}`;
    const publicUrl = explicitPublic ? validatePublicUrl(explicitPublic) : localUrl;
    const metrics = createServerMetrics();
    const upstreamFetch = instrumentFetch(o.fetch ?? globalThis.fetch, urls, metrics);
    const dropkey = await Dropkey.open({ store: stores.core, urls, fetch: upstreamFetch, now: Date.now, logger });
    const events = new ServerEvents((err, event) => logger.error({ err, event: event.type }, 'event listener failed'));
    // Issue 5: the proxy's 429 back-off is shared through the database by every instance on it;
    // DROPKEY_JOBS=off keeps background jobs off this instance (they still run once across the others).
    const backoff = new SharedBackoffStore(stores.backoff, {
      onError: (err) => logger.warn({ err }, 'shared 429 back-off unreachable: using this instance\'s memory until the database answers'),
    });
    const jobsOff = nonEmpty(o.env['DROPKEY_JOBS'])?.toLowerCase() === 'off';
    const modules = MODULES.filter((m) => !(jobsOff && m === jobsModule)).map((m) => (m === proxyModule ? createProxyModule({ backoff }) : m));
    const app = createApp({
      dropkey,
      serverStore: stores.server,
      webhookStore: stores.webhooks,
      clock: Date.now,
      logger,
      config: defaultConfig(publicUrl, o.config),
      fetch: upstreamFetch,
      metrics,
      events,
      // The web UI's master key page re-encrypts through the same code as `dropkey keys rotate`.
      keyRotation: keyRotationFor(stores.secrets, stores.keyring),
    }, { modules });
    listener.setApp(app);
    o.stdout.write(`dropkey serve listening on http://${shownHost}:${listener.port}\n`);
    if (publicUrl !== localUrl) o.stdout.write(`public URL: ${publicUrl} (OAuth redirect URI: ${app.services.paths.redirectUri})\n`);
    const setupUrl = await ensureSetupToken(app.services);
    if (setupUrl) o.stdout.write(`No admin exists yet. Create one within 24 hours at: ${setupUrl}\n`);
    app.start();
    logger.info({ host, port: listener.port, publicUrl }, 'dropkey serve started');

    const l = listener;
    const done = new Promise<void>((resolve) => {
      const shutdown = async () => {
        logger.info({}, 'shutting down: finishing in-flight requests');
        await l.close();
        await app.stop();
        await dropkey.close();
        await stores.close();
        logger.info({}, 'stopped');
        logger.flush?.();
        resolve();
      };
      if (o.signal.aborted) void shutdown();
      else o.signal.addEventListener('abort', () => void shutdown(), { once: true });
    });
    return { url: publicUrl, app, listener, done };
  } catch (err) {
    await listener?.close(0);
    await stores.close();
    throw err;
  }
}
