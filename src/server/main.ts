/**
 * The server's entry point. It reads no environment variable itself: `dropkey serve` (cli/commands/serve.ts) reads
 * them once through readConfig (src/config.ts: store location and master key, Dropbox URLs, public URL, log level,
 * DROPKEY_JOBS) and passes the configuration and its options here.
 */
import type { Writable } from 'node:stream';
import { Dropkey } from '../connections/dropkey.js';
import type { DropboxUrls } from '../dropbox/hosts.js';
import { checkPublicUrl, type DropkeyConfig } from '../config.js';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { openStores } from '../store/index.js';
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

/** What opening the stores needs from the configuration. */
export type StoreConfig = Pick<DropkeyConfig, 'home' | 'masterKey' | 'databaseUrl'>;

/**
 * Every store `dropkey serve` needs (core, server, webhooks, locks, shared back-off, key rotation) over one
 * database handle, from the configuration: the driver is the store's business (openStores picks it from the URL).
 */
export async function openServerStores(config: StoreConfig): Promise<Stores> {
  return openStores({ home: config.home, masterKey: config.masterKey, databaseUrl: config.databaseUrl });
}

/** The --public-url option: refused with what is wrong and how to fix it (DROPKEY_PUBLIC_URL is checked by readConfig). */
export function validatePublicUrl(value: string): string {
  const r = checkPublicUrl(value);
  if ('origin' in r) return r.origin;
  throw new DropkeyError(ErrorCodes.BAD_INPUT, `The public URL ${JSON.stringify(value)}: ${r.problem}.`, {
    hint: r.fix ?? 'Example: --public-url https://dropkey.example.com',
  });
}

export interface RunServerOptions {
  /** The configuration read from the environment by the entry point (readConfig). */
  config: DropkeyConfig;
  port?: number;
  host?: string;
  publicUrl?: string;
  stdout: Writable;
  /** JSON logs go here (stdout stays for the human lines: the listening address and the setup URL). */
  logStream?: Writable;
  signal: AbortSignal;
  /** Overrides for tests (e.g. a small flush interval). */
  serverConfig?: Partial<Omit<ServerConfig, 'publicUrl'>>;
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
  const urls: DropboxUrls = o.config.urls;
  const explicitPublic = o.publicUrl === undefined ? o.config.publicUrl : validatePublicUrl(o.publicUrl);
  const logger = createLogger({ level: o.config.logLevel, ...(o.logStream ? { destination: o.logStream } : {}) });
  const stores = await openServerStores(o.config);
  let listener: (Listener & { setApp(app: ServerApp): void }) | undefined;
  try {
    listener = await bind(port, host);
    const shownHost = host.includes(':') ? `[${host}]` : host;
    const localUrl = `http://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost === '[::]' ? '[::1]' : shownHost}:${listener.port}`;
    const publicUrl = explicitPublic ?? localUrl;
    const metrics = createServerMetrics();
    const upstreamFetch = instrumentFetch(o.fetch ?? globalThis.fetch, urls, metrics);
    const dropkey = await Dropkey.open({ store: stores.core, urls, fetch: upstreamFetch, now: Date.now, logger });
    const events = new ServerEvents((err, event) => logger.error({ err, event: event.type }, 'event listener failed'));
    // docs/decisions/0002-postgres-store.md: the proxy's 429 back-off is shared through the database by every instance on it;
    // DROPKEY_JOBS=off keeps background jobs off this instance (they still run once across the others).
    const backoff = new SharedBackoffStore(stores.backoff, {
      onError: (err) => logger.warn({ err }, 'shared 429 back-off unreachable: using this instance\'s memory until the database answers'),
    });
    const modules = MODULES.filter((m) => o.config.jobs || m !== jobsModule).map((m) => (m === proxyModule ? createProxyModule({ backoff }) : m));
    const app = createApp({
      dropkey,
      serverStore: stores.server,
      webhookStore: stores.webhooks,
      clock: Date.now,
      logger,
      config: defaultConfig(publicUrl, {
        ...(o.config.proxyUpstreamTimeoutMs === undefined ? {} : { proxyUpstreamTimeoutMs: o.config.proxyUpstreamTimeoutMs }),
        ...(o.config.auditRetentionMs === undefined ? {} : { auditRetentionMs: o.config.auditRetentionMs }),
        ...(o.config.refreshConcurrency === undefined ? {} : { refreshConcurrency: o.config.refreshConcurrency }),
        ...o.serverConfig,
      }),
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
