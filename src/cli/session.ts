/**
 * Opens the library facade for a command, from the CLI's configuration. Loaded lazily by each command so that
 * `dropkey --help` and usage errors never open the store.
 */
import type { CommandContext } from './context.js';
import { loadConfig, type CliConfig } from './config.js';
import type { Dropkey } from '../connections/dropkey.js';

export interface Session {
  dk: Dropkey;
  cfg: CliConfig;
}

export async function openSession(ctx: Pick<CommandContext, 'env'>): Promise<Session> {
  const cfg = await loadConfig(ctx.env);
  const { Dropkey } = await import('../connections/dropkey.js');
  const dk = await Dropkey.open({
    home: cfg.home,
    ...(cfg.masterKey === undefined ? {} : { masterKey: cfg.masterKey }),
    urls: cfg.urls,
    fetch: globalThis.fetch,
    now: Date.now,
  });
  return { dk, cfg };
}

/** Runs fn with an open facade and always closes it (releasing the SQLite handle) afterwards. */
export async function withSession<T>(ctx: Pick<CommandContext, 'env'>, fn: (s: Session) => Promise<T>): Promise<T> {
  const s = await openSession(ctx);
  try {
    return await fn(s);
  } finally {
    await s.dk.close();
  }
}
