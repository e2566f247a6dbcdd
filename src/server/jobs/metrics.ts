/**
 * Prometheus series of background work, registered on the app's registry (deps.metrics.registry) by the jobs and
 * webhooks modules themselves, once per registry. Label values are bounded: job names, results, event types.
 */
import { Counter, type ServerMetrics } from '../metrics.js';

export interface BackgroundMetrics {
  jobRuns: Counter;
  webhookAttempts: Counter;
  connectionEvents: Counter;
}

const cache = new WeakMap<object, BackgroundMetrics>();

export function backgroundMetrics(m: ServerMetrics): BackgroundMetrics {
  let b = cache.get(m.registry);
  if (!b) {
    b = {
      jobRuns: m.registry.register(
        new Counter('dropkey_job_runs_total', 'Background job attempts on this instance, by job and result (ran, failed, locked, recent, stopped).', ['job', 'result']),
      ),
      webhookAttempts: m.registry.register(
        new Counter('dropkey_webhook_attempts_total', 'Webhook delivery attempts made by this instance, by result (succeeded, retry, failed).', ['result']),
      ),
      connectionEvents: m.registry.register(new Counter('dropkey_connection_events_total', 'Connection events emitted by this instance, by type.', ['type'])),
    };
    cache.set(m.registry, b);
  }
  return b;
}
