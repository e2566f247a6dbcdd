/**
 * Opens the store and the library facade for a command, from the CLI's configuration. Loaded lazily by each
 * command so that `dropkey --help` and usage errors never open the store. `dropkey token` opens the store alone
 * first (openStoreOnly) and loads the facade only when the token must be refreshed: see commands/token.ts.
 */
import type { CommandContext } from './context.js';
import { duration, progressStream, startProgress, type ProgressStream, type ProgressTimers } from './progress.js';
import { loadConfig, type CliConfig } from './config.js';
import type { Dropkey } from '../connections/dropkey.js';
import type { Activity, ActivitySink } from '../connections/types.js';
import type { Store, Stores } from '../store/types.js';

export interface Session {
  dk: Dropkey;
  cfg: CliConfig;
  /**
   * Records an action the facade does not see (e.g. `export` printing secrets) in the audit log, like the facade's
   * own (src/cli/activity.ts). Never throws.
   */
  record(activity: Activity): Promise<void>;
}

export async function openStoreOnly(cfg: CliConfig): Promise<Store> {
  const { openStore } = await import('../store/index.js');
  return openStore({
    home: cfg.home,
    ...(cfg.masterKey === undefined ? {} : { masterKey: cfg.masterKey }),
    ...(cfg.databaseUrl === undefined ? {} : { databaseUrl: cfg.databaseUrl }),
  });
}

/**
 * The store with progress on a terminal while taking a lock (a refresh held by another CLI or a server) takes
 * longer than a second. Other calls go to the store itself (bound to it: drivers keep private fields).
 */
export function announcingLockWaits(store: Store, stderr: ProgressStream, timers?: ProgressTimers): Store {
  const withLock: Store['withLock'] = (key, options, fn) => {
    const progress = startProgress(stderr, (ms) => `dropkey: waiting for another dropkey process (it holds the lock "${key}")... ${duration(ms)}`, timers ? { timers } : {});
    return store
      .withLock(key, options, (lease) => {
        progress.stop();
        return fn(lease);
      })
      .finally(() => progress.stop());
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'withLock') return withLock;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * fetch with progress on a terminal for each request to Dropbox not answered within a second: a hung token
 * endpoint is otherwise a silent minute (the facade bounds it, see RetryOptions.totalTimeoutMs). Names the method
 * and the URL without its query (never a token or code there, but nothing to gain either); once answered, says
 * after how long.
 */
export function announcingSlowRequests(fetchFn: typeof fetch, stderr: ProgressStream, timers?: ProgressTimers): typeof fetch {
  const attempts = new Map<string, number>();
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const raw = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const u = new URL(raw);
    const what = `${(init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase()} ${u.origin}${u.pathname}`;
    const n = (attempts.get(what) ?? 0) + 1;
    attempts.set(what, n);
    const progress = startProgress(stderr, (ms) => `dropkey: waiting for Dropbox to answer (${what})${n > 1 ? `, attempt ${n}` : ''}... ${duration(ms)}`, timers ? { timers } : {});
    let answered = false;
    try {
      const res = await fetchFn(input, init);
      answered = true;
      return res;
    } finally {
      const shown = progress.shown;
      const ms = progress.stop();
      if (shown && answered) stderr.write(`dropkey: Dropbox answered after ${(ms / 1000).toFixed(1)} s.\n`);
    }
  }) as typeof fetch;
}

/**
 * The facade on an already opened store (which the caller closes). With `progress` (a terminal's stderr, see
 * progressStream), lock waits and slow answers show progress there; what it changes goes to `onActivity` (the audit
 * log and webhooks, see withSession).
 */
export async function facadeOn(store: Store, cfg: CliConfig, progress?: ProgressStream, onActivity?: ActivitySink): Promise<Dropkey> {
  const { Dropkey } = await import('../connections/dropkey.js');
  return Dropkey.open({
    store: progress ? announcingLockWaits(store, progress) : store,
    urls: cfg.urls,
    fetch: progress ? announcingSlowRequests(globalThis.fetch, progress) : globalThis.fetch,
    now: Date.now,
    ...(onActivity ? { onActivity } : {}),
  });
}

/** Every store over one handle: the facade's, plus the server store (audit log) and the webhook outbox. */
export async function openSessionStores(cfg: CliConfig): Promise<Stores> {
  const { openStores } = await import('../store/index.js');
  return openStores({
    home: cfg.home,
    ...(cfg.masterKey === undefined ? {} : { masterKey: cfg.masterKey }),
    ...(cfg.databaseUrl === undefined ? {} : { databaseUrl: cfg.databaseUrl }),
  });
}

/**
 * Runs fn with an open facade and always closes the stores (releasing the SQLite handle) afterwards. What the
 * command changes (apps, logins, imports, refreshes, revokes) is audited as `cli:<OS user>` in the server's audit
 * log, and the connection events it causes are queued for a running server's webhooks (src/cli/activity.ts).
 */
export async function withSession<T>(
  ctx: Pick<CommandContext, 'env' | 'cwd'> & Partial<Pick<CommandContext, 'stderr' | 'argv'>>,
  fn: (s: Session) => Promise<T>,
): Promise<T> {
  const cfg = await loadConfig(ctx.env, ctx.cwd);
  const stores = await openSessionStores(cfg);
  try {
    const stderr = ctx.stderr;
    // Loaded on the first action: read-only commands (list, doctor) never load the audit and outbox code.
    let sink: ActivitySink | undefined;
    const record: ActivitySink = async (a) => {
      if (!sink) {
        const { cliActivitySink, cliActor } = await import('./activity.js');
        sink = cliActivitySink({
          server: stores.server,
          webhooks: stores.webhooks,
          actor: cliActor(ctx.env),
          now: Date.now,
          warn: (line) => (stderr ? stderr.write(`${line}\n`) : process.emitWarning(line, 'DropkeyWarning')),
        });
      }
      await sink(a);
    };
    const dk = await facadeOn(stores.core, cfg, progressStream(ctx), record);
    try {
      return await fn({ dk, cfg, record: async (a) => record(a) });
    } finally {
      await dk.close();
    }
  } finally {
    await stores.close();
  }
}
