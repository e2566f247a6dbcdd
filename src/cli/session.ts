/**
 * Opens the store and the library facade for a command, from the CLI's configuration. Loaded lazily by each
 * command so that `dropkey --help` and usage errors never open the store. `dropkey token` opens the store alone
 * first (openStoreOnly) and loads the facade only when the token must be refreshed: see commands/token.ts.
 */
import type { CommandContext } from './context.js';
import { loadConfig, type CliConfig } from './config.js';
import type { Dropkey } from '../connections/dropkey.js';
import type { Store } from '../store/types.js';

export interface Session {
  dk: Dropkey;
  cfg: CliConfig;
}

export async function openStoreOnly(cfg: CliConfig): Promise<Store> {
  const { openStore } = await import('../store/index.js');
  return openStore({
    home: cfg.home,
    ...(cfg.masterKey === undefined ? {} : { masterKey: cfg.masterKey }),
    ...(cfg.databaseUrl === undefined ? {} : { databaseUrl: cfg.databaseUrl }),
  });
}

/** How long a lock wait goes on in silence before the user is told why nothing happens. */
export const LOCK_NOTICE_MS = 1_000;

/**
 * The store with a notice on stderr when taking a lock (a refresh held by another CLI or a server) takes longer
 * than LOCK_NOTICE_MS. Other calls go to the store itself (bound to it: drivers keep private fields).
 */
export function announcingLockWaits(store: Store, stderr: Pick<CommandContext['stderr'], 'write'>): Store {
  const withLock: Store['withLock'] = (key, options, fn) => {
    let acquired = false;
    const timer = setTimeout(() => {
      if (!acquired) stderr.write(`dropkey: waiting for another dropkey process (it holds the lock "${key}")...\n`);
    }, LOCK_NOTICE_MS);
    timer.unref();
    return store
      .withLock(key, options, (lease) => {
        acquired = true;
        clearTimeout(timer);
        return fn(lease);
      })
      .finally(() => clearTimeout(timer));
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'withLock') return withLock;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** The facade on an already opened store (which the caller closes); lock waits are announced on `stderr`. */
export async function facadeOn(store: Store, cfg: CliConfig, stderr?: Pick<CommandContext['stderr'], 'write'>): Promise<Dropkey> {
  const { Dropkey } = await import('../connections/dropkey.js');
  return Dropkey.open({ store: stderr ? announcingLockWaits(store, stderr) : store, urls: cfg.urls, fetch: globalThis.fetch, now: Date.now });
}

/** Runs fn with an open facade and always closes the store (releasing the SQLite handle) afterwards. */
export async function withSession<T>(ctx: Pick<CommandContext, 'env' | 'cwd'> & Partial<Pick<CommandContext, 'stderr'>>, fn: (s: Session) => Promise<T>): Promise<T> {
  const cfg = await loadConfig(ctx.env, ctx.cwd);
  const store = await openStoreOnly(cfg);
  try {
    const dk = await facadeOn(store, cfg, ctx.stderr);
    try {
      return await fn({ dk, cfg });
    } finally {
      await dk.close();
    }
  } finally {
    await store.close();
  }
}
