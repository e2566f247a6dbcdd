/**
 * Operations endpoints: /healthz (the process answers), /readyz (both stores answer), /metrics (Prometheus).
 * Unauthenticated like most exporters: the server binds to loopback by default; when exposed, keep these paths
 * off the public load balancer (docs/deploying.md).
 */
import { Hono } from 'hono';
import type { AppEnv, ServerModule } from './context.js';
import { METRICS_CONTENT_TYPE } from './metrics.js';
import type { ServerServices } from './services.js';

export function opsRoutes(s: ServerServices): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.get('/healthz', (c) => c.json({ status: 'ok' }, 200, { 'Cache-Control': 'no-store' }));
  r.get('/readyz', async (c) => {
    const checks: Record<string, string> = {};
    let ok = true;
    for (const [name, probe] of [
      ['server_store', () => s.serverStore.ping()],
      // A keyed read of a name that cannot exist: touches the database without decrypting anything.
      ['store', async () => void (await s.dropkey.store.getApp('-readyz-'))],
    ] as const) {
      try {
        await probe();
        checks[name] = 'ok';
      } catch (err) {
        ok = false;
        checks[name] = 'unavailable';
        s.logger.warn({ err, check: name }, 'readiness check failed');
      }
    }
    return c.json({ status: ok ? 'ok' : 'unavailable', checks }, ok ? 200 : 503, { 'Cache-Control': 'no-store' });
  });
  r.get('/metrics', (c) => c.body(s.metrics.registry.render(), 200, { 'Content-Type': METRICS_CONTENT_TYPE, 'Cache-Control': 'no-store' }));
  return r;
}

export const opsModule: ServerModule = { name: 'ops', mount: '/', routes: opsRoutes };
