/**
 * The server's shared services, built once per app from ServerDeps and handed to every sub-app (api, ui, oauth,
 * proxy, webhooks, jobs). This file only puts them together; each service is one file in services/:
 *   paths.ts        URLs of the server's own pages
 *   audit.ts        the audit log (also used by `dropkey apikey`)
 *   usage.ts        token hand-outs and key use, counted in memory, written every flush interval
 *   api-keys.ts     API keys and permission checks (also used by `dropkey apikey`)
 *   tokens.ts       the token cache behind the token API
 *   connections.ts  refresh, revoke and test of a connection, for the API and the web UI alike
 * Every field is plain: what a module makes later (the webhook service, the scheduler) has its own field here.
 */
import { randomBytes } from 'node:crypto';
import type { ServerDeps } from './deps.js';
import type { Scheduler } from './jobs/scheduler.js';
import { UpstreamAgents } from './proxy/transport.js';
import { securityHeaders } from './security/headers.js';
import { RateLimiter } from './security/rate-limit.js';
import type { WebhookService } from './webhooks/service.js';
import { ApiKeyService } from './services/api-keys.js';
import { AuditLog } from './services/audit.js';
import { ConnectionService } from './services/connections.js';
import { ServerPaths } from './services/paths.js';
import { TokenService } from './services/tokens.js';
import { UsageRecorder } from './services/usage.js';

export { ServerPaths } from './services/paths.js';
export { AuditLog } from './services/audit.js';
export { UsageRecorder } from './services/usage.js';
export { ApiKeyService, authorize, type CreateApiKeyInput, hasPermission, mayUseConnection, validateKeyName, validatePermissions } from './services/api-keys.js';
export { answer, type CachedToken, TokenService, tokenBody, withReconnectUrl } from './services/tokens.js';
export { type ActionSource, ConnectionService, type TestResult } from './services/connections.js';

export interface ServerServices extends ServerDeps {
  paths: ServerPaths;
  /** The security headers as a record (security/headers.ts), for responses built by hand on hot paths. */
  securityHeaders: Readonly<Record<string, string>>;
  /**
   * Responses that already carry the security headers (built with securityHeaders): app.ts's middleware skips
   * them, so @hono/node-server can write their plain header object without converting it to Headers.
   */
  preSecured: WeakSet<Response>;
  audit: AuditLog;
  usage: UsageRecorder;
  apiKeys: ApiKeyService;
  tokens: TokenService;
  connections: ConnectionService;
  limits: RateLimiter;
  randomBytes: NonNullable<ServerDeps['randomBytes']>;
  /** Keep-alive pools for the proxy's requests to Dropbox under the Node listener; closed when the app stops. */
  upstreamAgents: UpstreamAgents;
  /** The webhook service, made on first use by webhookService() (webhooks/service.ts). */
  webhooks: WebhookService | undefined;
  /** The background job scheduler while the jobs module runs (jobs/index.ts). */
  scheduler: Scheduler | undefined;
}

export function createServices(deps: ServerDeps): ServerServices {
  const paths = new ServerPaths(deps.config.publicUrl);
  const audit = new AuditLog(deps);
  const tokens = new TokenService(deps, paths);
  const headers = securityHeaders({ authorizeUrl: deps.dropkey.urls.authorize, https: deps.config.publicUrl.startsWith('https:') });
  return {
    ...deps,
    securityHeaders: Object.freeze(Object.fromEntries(headers)),
    preSecured: new WeakSet(),
    randomBytes: deps.randomBytes ?? randomBytes,
    paths,
    audit,
    usage: new UsageRecorder(deps),
    apiKeys: new ApiKeyService(deps, audit),
    tokens,
    connections: new ConnectionService({ dropkey: deps.dropkey, audit, tokens, events: deps.events, paths, clock: deps.clock }),
    limits: new RateLimiter(deps.clock),
    upstreamAgents: new UpstreamAgents(),
    webhooks: undefined,
    scheduler: undefined,
  };
}
