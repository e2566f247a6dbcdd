/**
 * A small Prometheus metrics registry (text exposition format 0.0.4): counters, gauges and histograms with
 * labels. Written here rather than adding prom-client: ~100 lines cover what dropkey exports, and the hot path
 * (a token hand-out) costs one Map lookup and an addition.
 *
 * Other modules increment the shared metrics in `createServerMetrics()`; add new ones there so /metrics lists
 * every series with its HELP and TYPE even before the first increment.
 */

type Labels = Record<string, string>;

function labelKey(names: readonly string[], labels: Labels): string {
  // One label (most series here): its value is the key, with no array or string built on the token hot path.
  if (names.length === 1) return labels[names[0]!] ?? '';
  return names.map((n) => labels[n] ?? '').join('\u0000');
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function renderLabels(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i] ?? '')}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function formatNumber(n: number): string {
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return Number.isNaN(n) ? 'NaN' : String(n);
}

interface Metric {
  readonly name: string;
  render(): string;
}

abstract class Series implements Metric {
  protected readonly values = new Map<string, { labels: string[]; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly type: 'counter' | 'gauge',
  ) {}

  protected add(labels: Labels, delta: number, set = false): void {
    const key = labelKey(this.labelNames, labels);
    const cur = this.values.get(key);
    if (cur) cur.value = set ? delta : cur.value + delta;
    else this.values.set(key, { labels: this.labelNames.map((n) => labels[n] ?? ''), value: delta });
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelKey(this.labelNames, labels))?.value ?? 0;
  }

  /**
   * The series for these labels, created at 0 when new, to add to directly (`series.value += n`) on a hot path that
   * would otherwise look it up on every increment. Series are never removed, so a handle stays valid.
   */
  series(labels: Labels): { value: number } {
    const key = labelKey(this.labelNames, labels);
    let cur = this.values.get(key);
    if (!cur) this.values.set(key, (cur = { labels: this.labelNames.map((n) => labels[n] ?? ''), value: 0 }));
    return cur;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${renderLabels(this.labelNames, labels)} ${formatNumber(value)}`);
    return lines.join('\n');
  }
}

export class Counter extends Series {
  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    super(name, help, labelNames, 'counter');
  }
  inc(labels: Labels = {}, by = 1): void {
    if (by < 0) throw new RangeError('a counter only goes up');
    this.add(labels, by);
  }
}

export class Gauge extends Series {
  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    super(name, help, labelNames, 'gauge');
  }
  set(labels: Labels, value: number): void {
    this.add(labels, value, true);
  }
  inc(labels: Labels = {}, by = 1): void {
    this.add(labels, by);
  }
}

export class Histogram implements Metric {
  readonly #series = new Map<string, { labels: string[]; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[] = [],
    readonly buckets: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  ) {}

  observe(labels: Labels, value: number): void {
    const key = labelKey(this.labelNames, labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels: this.labelNames.map((n) => labels[n] ?? ''), counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  count(labels: Labels = {}): number {
    return this.#series.get(labelKey(this.labelNames, labels))?.count ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.#series.values()) {
      this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket${renderLabels(this.labelNames, s.labels, ['le', formatNumber(b)])} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket${renderLabels(this.labelNames, s.labels, ['le', '+Inf'])} ${s.count}`);
      lines.push(`${this.name}_sum${renderLabels(this.labelNames, s.labels)} ${formatNumber(s.sum)}`);
      lines.push(`${this.name}_count${renderLabels(this.labelNames, s.labels)} ${s.count}`);
    }
    return lines.join('\n');
  }
}

export class Registry {
  readonly #metrics = new Map<string, Metric>();

  register<M extends Metric>(m: M): M {
    if (this.#metrics.has(m.name)) throw new Error(`metric ${m.name} is already registered`);
    this.#metrics.set(m.name, m);
    return m;
  }

  /** The exposition text; serve it as `text/plain; version=0.0.4`. */
  render(): string {
    return [...this.#metrics.values()].map((m) => m.render()).join('\n') + '\n';
  }
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** The server's metrics. Increment them from any module through deps.metrics. */
export function createServerMetrics(registry = new Registry()) {
  return {
    registry,
    tokenHandouts: registry.register(new Counter('dropkey_token_handouts_total', 'Access tokens handed out by the token API, by connection.', ['connection'])),
    refreshes: registry.register(new Counter('dropkey_refreshes_total', 'Refresh-token grants sent to Dropbox, by outcome (ok, invalid_grant, error, network).', ['outcome'])),
    upstreamLatency: registry.register(
      new Histogram('dropkey_upstream_request_duration_seconds', 'Duration of requests to Dropbox, by host kind (api, content, token, notify, other).', ['host']),
    ),
    upstream429: registry.register(new Counter('dropkey_upstream_429_total', 'Dropbox answers with status 429 (rate limited), by host kind.', ['host'])),
    proxyBytes: registry.register(new Counter('dropkey_proxy_bytes_total', 'Body bytes streamed through the proxy, by direction (upload, download).', ['direction'])),
    // Added by the proxy: answers by status code; label values are bounded (connections, HTTP statuses).
    proxyRequests: registry.register(new Counter('dropkey_proxy_requests_total', 'Requests answered by the proxy, by connection and HTTP status.', ['connection', 'status'])),
    httpRequests: registry.register(new Counter('dropkey_http_requests_total', 'HTTP requests served, by status class (2xx, 4xx, ...).', ['status'])),
    // Background work (jobs/, webhooks/). Label values are bounded: job names, results, event types.
    jobRuns: registry.register(
      new Counter('dropkey_job_runs_total', 'Background job attempts on this instance, by job and result (ran, failed, locked, recent, stopped).', ['job', 'result']),
    ),
    webhookAttempts: registry.register(
      new Counter('dropkey_webhook_attempts_total', 'Webhook delivery attempts made by this instance, by result (succeeded, retry, failed).', ['result']),
    ),
    connectionEvents: registry.register(new Counter('dropkey_connection_events_total', 'Connection events emitted by this instance, by type.', ['type'])),
    // The proactive refresher's progress (jobs/refresh.ts): what is left of the current run, and how it went.
    refreshBacklog: registry.register(new Gauge('dropkey_refresh_due', 'Connections due for a background refresh and not yet done in the current run.')),
    backgroundRefreshes: registry.register(
      new Counter('dropkey_background_refreshes_total', 'Background refreshes by result (refreshed, failed, rate_limited: retried after Dropbox\'s Retry-After).', ['result']),
    ),
    refreshPausedSeconds: registry.register(new Counter('dropkey_refresh_paused_seconds_total', 'Seconds the background refresher waited out Retry-After answers of the token endpoint.')),
    auditPruned: registry.register(new Counter('dropkey_audit_pruned_total', 'Audit entries deleted by the retention job.')),
  };
}

export type ServerMetrics = ReturnType<typeof createServerMetrics>;
