/**
 * `dropkey serve`'s application: createApp(deps) builds a plain Request → Response app (hono); node.ts is the
 * thin listener. Tests call `app.request()` / `app.fetch()` without a socket.
 *
 * MOUNT POINTS (the MODULES list below; mount order = list order):
 *   ops      '/'        /healthz, /readyz, /metrics                                   (ops.ts)
 *   api      '/api/v1'  JSON API with API keys; its OpenAPI document at /api/openapi.json (api/, api/openapi.ts)
 *   oauth    '/'        /connect/{token}, /oauth/callback, /oauth/popup.js            (oauth/routes.ts)
 *   proxy    '/proxy'   the Dropbox proxy, streamed, refresh-and-retry, shared 429 back-off (proxy/)
 *   webhooks '/api/v1/webhooks'  webhook admin API + signed delivery worker             (webhooks/)
 *   jobs     '/api/v1/jobs'      proactive refresh, health checks, purge; GET = last runs (jobs/)
 *   ui       '/'        web UI, LAST (it may own a catch-all)                          (ui/)
 * A module is { name, mount, routes(services), start?(services) } (context.ts). Background work (refresher,
 * health checks, webhook delivery) goes in `start`, which node.ts calls after listening and stops on shutdown.
 * Every module receives the same ServerServices (services.ts; one file per service in services/): deps + paths,
 * audit, usage counters, API keys, token cache, connection actions (refresh, revoke, test), rate limits.
 * New API routes must also be described in api/openapi.ts (a test checks).
 *
 * ERRORS: routes throw (DropkeyError, HttpError); the onError below is the ONE place errors become responses:
 * JSON {"error": {...}} under /api and /proxy (a fix as the `fix` field), elsewhere a page in the UI's layout (a
 * fix as links for admins, words only for connect-link owners), the popup result in popup mode.
 *
 * UI CONTRACT (pages other modules link to): GET /setup?token=... (first admin, posts to POST /api/v1/setup),
 * GET /connections/{name}/reconnect (the reconnect URL in 409 DROPKEY_REAUTH_REQUIRED answers),
 * GET /connections/{name} (where redirect-mode logins land by default).
 */
import { Hono } from 'hono';
import { apiModule } from './api/index.js';
import { type NodeFastPath, type RequestDone, tokenFastPath } from './api/token-fast-path.js';
import { openApiDocument } from './api/openapi.js';
import type { AppContext, AppEnv, ServerModule } from './context.js';
import type { ServerDeps } from './deps.js';
import { CLIENT_CLOSED_REQUEST, clientWentAway, HttpError, mapError, ServerErrorCodes } from './errors.js';
import { html } from './html.js';
import { maskText } from './logger.js';
import { oauthModule, POPUP_SCRIPT_PATH } from './oauth/routes.js';
import { opsModule } from './ops.js';
import { jobsModule } from './jobs/index.js';
import { webhooksModule } from './webhooks/index.js';
import { proxyModule } from './proxy/index.js';
import { uiModule } from './ui/index.js';
import { page, problemPage } from './ui/layout.js';
import { createServices, type ServerServices } from './services.js';

/** The modules mounted by default. Helpers adding ui/proxy/webhooks: import the module and add it here. */
export const MODULES: ServerModule[] = [opsModule, apiModule, oauthModule, proxyModule, webhooksModule, jobsModule, uiModule];

export interface ServerApp {
  /** The Request → Response handler. */
  fetch(request: Request, env?: AppEnv['Bindings']): Response | Promise<Response>;
  /** hono's test helper: app.request('/api/v1/connections', { headers }). */
  request: Hono<AppEnv>['request'];
  hono: Hono<AppEnv>;
  /**
   * Token hand-outs answered straight from the node listener when everything they need is in memory (see
   * api/token-fast-path.ts); returns false, having done nothing, for every other request, which then goes to fetch.
   */
  fastPath?: NodeFastPath;
  services: ServerServices;
  modules: readonly ServerModule[];
  /** Starts periodic work (usage flush, purge, modules' start()). Called by the listener, not by tests that need no timers. */
  start(): void;
  /** Stops periodic work, closes the upstream pools and writes pending counters. Does not close the stores (the owner of deps does). */
  stop(): Promise<void>;
}

/** Path shown in logs: no query (codes, states) and no connect-link token. */
export function logPath(path: string): string {
  return path.replace(/^\/connect\/[^/]+/, '/connect/[redacted]').replace(/^\/setup\b.*/, '/setup');
}

function wantsJson(path: string): boolean {
  return path.startsWith('/api/') || path === '/api' || path.startsWith('/proxy/');
}

export function createApp(deps: ServerDeps, options: { modules?: ServerModule[] } = {}): ServerApp {
  const services = createServices(deps);
  const modules = options.modules ?? MODULES;
  const app = new Hono<AppEnv>();
  const headers = Object.entries(services.securityHeaders);
  const { logger, metrics } = deps;
  const statusClass = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'].map((status) => ({ status }));

  // Every answered request is counted and logged here, whether hono or the token fast path answered it.
  const served: RequestDone = (method, path, status, started) => {
    metrics.httpRequests.inc(statusClass[Math.floor(status / 100)] ?? { status: 'other' });
    // Hot GETs log at debug (bench/serve-token.mjs); changes, client errors and failures at info and above.
    const level = status >= 500 ? 'warn' : method === 'GET' || method === 'HEAD' ? (status >= 400 ? 'info' : 'debug') : 'info';
    if (logger.isLevelEnabled(level)) {
      logger[level]({ method, path: logPath(path), status, ms: Math.round((performance.now() - started) * 10) / 10 }, 'request');
    }
  };

  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    const res = c.res;
    // Never c.header() after next(): on a finished response it makes @hono/node-server drop its fast path.
    if (!services.preSecured.has(res)) for (const [k, v] of headers) res.headers.set(k, v);
    served(c.req.method, c.req.path, res.status, started);
  });

  app.get('/api/openapi.json', (c) => c.json(openApiDocument(services.paths.publicUrl)));

  for (const m of modules) app.route(m.mount, m.routes(services));

  // THE error boundary (notFound answers through it too: a throw from notFound would skip the middleware above).
  const boundary = (err: unknown, c: AppContext): Response => {
    if (clientWentAway(err, c)) {
      // Nobody is left to answer, and nothing failed on our side: an info line, no stack, no 5xx in the metrics.
      logger.info({ method: c.req.method, path: logPath(c.req.path), aborted: true }, 'client went away');
      return c.body(null, CLIENT_CLOSED_REQUEST as 400, { 'Cache-Control': 'no-store' });
    }
    const mapped = mapError(err);
    if (mapped.unexpected) {
      logger.error({ err, stack: err instanceof Error && err.stack ? maskText(err.stack) : undefined, path: logPath(c.req.path) }, 'request failed');
    }
    const h: Record<string, string> = { ...mapped.headers, 'Cache-Control': 'no-store' };
    if (wantsJson(c.req.path)) return c.json({ error: mapped.body }, mapped.status as 400, h);
    if (c.get('popupResult')) {
      const result = { ok: false, error: { code: mapped.body.code, message: mapped.body.message } };
      return c.html(
        page({
          title: 'Not connected',
          body: html`<section class="narrow"><h1>${mapped.body.message}</h1></section>`,
          scripts: [POPUP_SCRIPT_PATH],
          bodyData: { result: JSON.stringify(result) },
        }),
        mapped.status as 400,
        h,
      );
    }
    return c.html(problemPage(mapped.status, mapped.body, c.get('ownerPage') ? 'owner' : 'admin'), mapped.status as 400, h);
  };
  app.onError(boundary);
  app.notFound((c) =>
    boundary(
      new HttpError(ServerErrorCodes.ROUTE_NOT_FOUND, `Nothing here: ${c.req.method} ${logPath(c.req.path)}.`, {
        hint: wantsJson(c.req.path) ? 'See the API description at /api/openapi.json.' : 'Check the address.',
      }),
      c,
    ),
  );

  const stoppers: { stop(): Promise<void> }[] = [];
  let timer: NodeJS.Timeout | undefined;
  let ticks = 0;
  return {
    fetch: (req, env) => app.fetch(req, env),
    ...(modules.includes(apiModule) ? { fastPath: tokenFastPath(services, served, apiModule.mount) } : {}),
    request: app.request.bind(app) as Hono<AppEnv>['request'],
    hono: app,
    services,
    modules,
    start() {
      if (timer) return;
      timer = setInterval(() => {
        void services.usage.tick();
        // Purge about once a minute with the default 5 s interval.
        if (++ticks % 12 === 0) services.serverStore.purgeExpired(deps.clock()).catch((err) => logger.warn({ err }, 'purge failed'));
      }, deps.config.flushIntervalMs);
      timer.unref();
      for (const m of modules) if (m.start) stoppers.push(m.start(services));
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      for (const s of stoppers.splice(0)) await s.stop().catch((err) => logger.warn({ err }, 'a module failed to stop'));
      services.upstreamAgents.destroy();
      await services.usage.flush();
    },
  };
}
