/**
 * What the server is built from. createApp(deps) takes everything from here and reads nothing else (no env, no
 * globals), so tests build a server on an emulator, a temp store and a fake clock without a socket.
 */
import type { Logger as PinoLogger } from 'pino';
import type { Dropkey } from '../connections/dropkey.js';
import type { KeyRotationController } from '../store/rotation.js';
import type { ServerStore } from '../store/server-types.js';
import type { WebhookStore } from '../store/webhook-types.js';
import type { ServerEvents } from './events.js';
import type { ServerMetrics } from './metrics.js';
import type { RandomBytes } from './security/secrets.js';

export interface ServerConfig {
  /**
   * The externally visible base URL, no trailing slash (e.g. https://dropkey.example.com). Redirect URIs
   * (`${publicUrl}/oauth/callback`), connect links and reconnect URLs are built from it.
   */
  publicUrl: string;
  /** Connect link lifetime when the request gives none (default 30 min, docs/api.md). */
  connectLinkTtlMs: number;
  /** Pending OAuth logins expire after this (default 10 min). */
  pendingLoginTtlMs: number;
  /** Admin sessions (default 12 h). */
  sessionTtlMs: number;
  /** How long an API key lookup is cached in memory; bounds how long a key revoked elsewhere keeps working (default 5 s). */
  apiKeyCacheMs: number;
  /**
   * While the store cannot be reached, what it confirmed within this long is still served from memory (default
   * 5 min): API keys found live, and cached tokens whose connection the change log confirmed, so that tokens keep
   * flowing through a database restart or failover. Revoking needs the store, so no revoke can happen during the
   * outage itself; one made by another instance just before it can go unseen here for at most this long.
   */
  storeOutageGraceMs: number;
  /**
   * Tokens are served from memory for as long as they stay valid (minus the refresh margin); this bounds how long a
   * connection revoked or changed by another process or instance keeps getting tokens from this one: the store's
   * change log is read every tokenCacheMs / 2 under load, and memory is not trusted when the last read is older
   * (default 5 s; src/server/services/tokens.ts).
   */
  tokenCacheMs: number;
  /** Usage counters and buffered audit entries are written this often (default 5 s). */
  flushIntervalMs: number;
  /** Use X-Forwarded-For for client IPs (rate limits) only when a trusted proxy sets it (default false). */
  trustProxy: boolean;
  /**
   * How long the proxy waits for Dropbox to start answering an RPC call before giving up with a 504 (default 60 s;
   * env DROPKEY_PROXY_UPSTREAM_TIMEOUT, seconds). Uploads, downloads and longpoll are not bounded by it.
   */
  proxyUpstreamTimeoutMs: number;
  /**
   * How often the webhook worker looks for deliveries queued by other processes: other instances and CLI commands
   * run on the same store (default 15 s).
   */
  webhookPollMs: number;
  /** Audit entries older than this are pruned by the jobs (default 90 days; env DROPKEY_AUDIT_RETENTION_DAYS). */
  auditRetentionMs: number;
  /** Background refreshes in flight at most (default 32; env DROPKEY_REFRESH_CONCURRENCY). */
  refreshConcurrency: number;
}

export type Logger = PinoLogger;

export interface ServerDeps {
  dropkey: Dropkey;
  serverStore: ServerStore;
  /** Webhook endpoints, outbox and job runs; without it the webhook routes answer 503 and background jobs stay off. */
  webhookStore?: WebhookStore;
  /** Re-encrypts stored secrets under the active master key (the UI's master key page); without it the page shows the CLI way. */
  keyRotation?: KeyRotationController;
  /** Epoch ms. */
  clock: () => number;
  logger: Logger;
  config: ServerConfig;
  /** Upstream fetch (already instrumented: see upstream.ts). The proxy uses it; the facade was built with it. */
  fetch: typeof fetch;
  metrics: ServerMetrics;
  events: ServerEvents;
  /** Randomness for tokens and keys (default crypto.randomBytes). */
  randomBytes?: RandomBytes;
}

export function defaultConfig(publicUrl: string, overrides: Partial<ServerConfig> = {}): ServerConfig {
  return {
    publicUrl: publicUrl.replace(/\/+$/, ''),
    connectLinkTtlMs: 30 * 60_000,
    pendingLoginTtlMs: 10 * 60_000,
    sessionTtlMs: 12 * 3600_000,
    apiKeyCacheMs: 5_000,
    storeOutageGraceMs: 5 * 60_000,
    tokenCacheMs: 5_000,
    flushIntervalMs: 5_000,
    trustProxy: false,
    proxyUpstreamTimeoutMs: 60_000,
    webhookPollMs: 15_000,
    auditRetentionMs: 90 * 86_400_000,
    refreshConcurrency: 32,
    ...overrides,
  };
}
