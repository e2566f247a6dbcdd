import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, createServerMetrics, Histogram, Registry } from './metrics.js';

test('exposition format: HELP/TYPE, labels escaped, cumulative histogram buckets with +Inf, sum and count', () => {
  const r = new Registry();
  const c = r.register(new Counter('x_total', 'Things.', ['name']));
  const h = r.register(new Histogram('lat_seconds', 'Latency.', ['host'], [0.1, 1]));
  c.inc({ name: 'a"b\\c\nd' });
  c.inc({ name: 'a"b\\c\nd' }, 2);
  h.observe({ host: 'api' }, 0.05);
  h.observe({ host: 'api' }, 0.5);
  h.observe({ host: 'api' }, 5);
  assert.equal(
    r.render(),
    [
      '# HELP x_total Things.',
      '# TYPE x_total counter',
      'x_total{name="a\\"b\\\\c\\nd"} 3',
      '# HELP lat_seconds Latency.',
      '# TYPE lat_seconds histogram',
      'lat_seconds_bucket{host="api",le="0.1"} 1',
      'lat_seconds_bucket{host="api",le="1"} 2',
      'lat_seconds_bucket{host="api",le="+Inf"} 3',
      'lat_seconds_sum{host="api"} 5.55',
      'lat_seconds_count{host="api"} 3',
      '',
    ].join('\n'),
  );
  assert.throws(() => c.inc({}, -1), /only goes up/);
  assert.throws(() => r.register(new Counter('x_total', 'again')), /already registered/);
});

test('the server metrics are all registered up front', () => {
  const m = createServerMetrics();
  const text = m.registry.render();
  for (const name of ['dropkey_token_handouts_total', 'dropkey_refreshes_total', 'dropkey_upstream_request_duration_seconds', 'dropkey_upstream_429_total', 'dropkey_proxy_bytes_total', 'dropkey_http_requests_total']) {
    assert.match(text, new RegExp(`# TYPE ${name} `));
  }
});
