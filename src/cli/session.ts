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

/** The facade on an already opened store (which the caller closes). */
export async function facadeOn(store: Store, cfg: CliConfig): Promise<Dropkey> {
  const { Dropkey } = await import('../connections/dropkey.js');
  return Dropkey.open({ store, urls: cfg.urls, fetch: globalThis.fetch, now: Date.now });
}

/** Runs fn with an open facade and always closes the store (releasing the SQLite handle) afterwards. */
export async function withSession<T>(ctx: Pick<CommandContext, 'env' | 'cwd'>, fn: (s: Session) => Promise<T>): Promise<T> {
  const cfg = await loadConfig(ctx.env, ctx.cwd);
  const store = await openStoreOnly(cfg);
  try {
    const dk = await facadeOn(store, cfg);
    try {
      return await fn({ dk, cfg });
    } finally {
      await dk.close();
    }
  } finally {
    await store.close();
  }
}
