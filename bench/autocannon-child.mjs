// The fallback load generator (bench/lib.mjs, when wrk is not installed): autocannon in a process of its own, so
// its CPU use can be read apart from the benchmark's. Arguments come as JSON in BENCH_AUTOCANNON, the
// Authorization header in BENCH_AUTHORIZATION (not argv). Prints one line: AC_JSON {...}.
import autocannon from 'autocannon';

const o = JSON.parse(process.env.BENCH_AUTOCANNON ?? '{}');
const EXPIRES_IN = /"expires_in":\d+/;
const sameButExpiresIn = (a, b) => a.length === b.length && a.replace(EXPIRES_IN, '') === b.replace(EXPIRES_IN, '');
const headers = process.env.BENCH_AUTHORIZATION ? { authorization: process.env.BENCH_AUTHORIZATION } : {};
const r = await autocannon({
  url: o.url,
  connections: o.connections,
  duration: o.durationS,
  headers,
  timeout: 10,
  // Every answer must be the expected body, but for expires_in: a token answer counts down its seconds.
  ...(o.expectBody === undefined ? {} : { verifyBody: (body) => sameButExpiresIn(body, o.expectBody) }),
  // o.paths: each request to one of them at random.
  ...(o.paths
    ? { requests: [{ setupRequest: (req) => ({ ...req, path: o.paths[Math.floor(Math.random() * o.paths.length)] }) }] }
    : {}),
});
console.log(
  `AC_JSON ${JSON.stringify({
    requests: r.requests.total,
    duration_s: r.duration,
    bytes: r.throughput.total,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    mismatches: r.mismatches ?? 0,
    p50_ms: r.latency.p50,
    p90_ms: r.latency.p90,
    p99_ms: r.latency.p99,
    max_ms: r.latency.max,
  })}`,
);
