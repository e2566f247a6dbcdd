/**
 * The proactive refresher's pacing, spreading and Retry-After, on an injected clock (ManualTimers): the token
 * endpoint is a fake whose answers take simulated time, so minutes of background work pass in milliseconds.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DropboxApiError, ErrorCodes } from '../../errors.js';
import { ServerEvents } from '../events.js';
import type { ConnectionSummary } from '../../store/types.js';
import { refreshExpiring, refreshPoint, type RefreshOptions, type RefreshRunSummary } from './refresh.js';
import { ManualTimers } from './timers.js';

const MIN = 60_000;
const LIFETIME = 4 * 60 * MIN;

interface Fake {
  timers: ManualTimers;
  rows: Map<string, number>;
  calls: { name: string; at: number }[];
  inFlight: number;
  maxInFlight: number;
  /** Answers 429 (with this Retry-After in seconds) to the next calls, one entry each. */
  rateLimits: number[];
  latencyMs: number;
  options: RefreshOptions;
  run(extra?: Partial<RefreshOptions> & { forced?: boolean }): Promise<RefreshRunSummary>;
}

function fake(n: number, expiresAt: (i: number) => number, o: { latencyMs?: number; maxConcurrency?: number } = {}): Fake {
  const timers = new ManualTimers();
  const f: Fake = {
    timers,
    rows: new Map(Array.from({ length: n }, (_, i) => [`c${String(i).padStart(5, '0')}`, expiresAt(i)])),
    calls: [],
    inFlight: 0,
    maxInFlight: 0,
    rateLimits: [],
    latencyMs: o.latencyMs ?? 200,
    options: undefined as unknown as RefreshOptions,
    run: async () => undefined as unknown as RefreshRunSummary,
  };
  const sleep = (ms: number, signal?: AbortSignal) =>
    new Promise<void>((resolve) => {
      const h = timers.setTimeout(resolve, ms);
      signal?.addEventListener('abort', () => (timers.clearTimeout(h), resolve()), { once: true });
    });
  const store = {
    async listDueConnections(before: number, limit: number): Promise<ConnectionSummary[]> {
      return [...f.rows]
        .filter(([, e]) => e <= before)
        .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))
        .slice(0, limit)
        .map(([name, e]) => ({ name, app: 'app', accountId: null, email: null, state: 'active', expiresAt: e, refreshable: true, hasAccessToken: true }));
    },
  };
  const getToken = async (name: string) => {
    f.calls.push({ name, at: timers.now() });
    f.inFlight++;
    f.maxInFlight = Math.max(f.maxInFlight, f.inFlight);
    await sleep(f.latencyMs);
    f.inFlight--;
    const limited = f.rateLimits.shift();
    if (limited !== undefined) {
      throw new DropboxApiError(429, 'too_many_requests', null, 'Dropbox is rate-limiting token requests (HTTP 429)', {
        code: ErrorCodes.DROPBOX_UNAVAILABLE,
        details: { endpoint: 'oauth2/token', retryAfter: limited },
      });
    }
    const e = timers.now() + LIFETIME;
    f.rows.set(name, e);
    return { accessToken: `sl.${name}`, expiresAt: e, scopes: [], accountId: null, teamId: null, connection: name };
  };
  f.options = { marginMs: 10 * MIN, spreadMs: 5 * MIN, paceMs: MIN, maxConcurrency: o.maxConcurrency ?? 8, sleep };
  const logger = { info() {}, warn() {}, error() {}, debug() {} };
  f.run = (extra = {}) =>
    drive(timers, refreshExpiring({ dropkey: { store, getToken }, events: new ServerEvents(), clock: timers.clock, logger }, { ...f.options, ...extra }));
  return f;
}

/** Lets the work run, moving the clock to the next timer whenever everything waits on one. */
async function drive<T>(timers: ManualTimers, p: Promise<T>): Promise<T> {
  let done = false;
  const out = p.finally(() => (done = true));
  while (!done) {
    for (let i = 0; i < 5 && !done; i++) await new Promise((r) => setImmediate(r));
    if (done) break;
    const next = timers.nextAt;
    assert.ok(next !== undefined, 'the run waits on nothing: it would hang');
    timers.advance(next - timers.now());
  }
  return out;
}

describe('proactive refresh pacing', () => {
  test('a batch import expiring together is refreshed spread over the window, and its next expiries are spread', async () => {
    const start = new ManualTimers().now();
    const T = start + 14 * MIN;
    const f = fake(600, () => T);
    const refreshedAt = new Map<string, number>();
    for (let run = 0; run < 8; run++) {
      const before = f.calls.length;
      const r = await f.run();
      for (const c of f.calls.slice(before)) refreshedAt.set(c.name, c.at);
      assert.deepEqual(r.failed, []);
      f.timers.advance(start + (run + 1) * MIN - f.timers.now());
    }
    assert.equal(refreshedAt.size, 600, 'every connection refreshed');
    assert.equal(f.calls.length, 600, 'each once');
    for (const [name, at] of refreshedAt) {
      assert.ok(at >= refreshPoint({ name, expiresAt: T }, 10 * MIN, 5 * MIN), `${name} not before its point`);
      assert.ok(at < T - 5 * MIN, `${name} refreshed with more than half the margin left`);
    }
    const next = [...f.rows.values()];
    const spread = Math.max(...next) - Math.min(...next);
    assert.ok(spread >= 3 * MIN, `next expiries spread over ${spread / 1000} s`);
    // No burst: in no 5-second window did more than a tenth of the connections start.
    const times = f.calls.map((c) => c.at).sort((a, b) => a - b);
    let most = 0;
    for (let i = 0, j = 0; i < times.length; i++) {
      while (times[i]! - times[j]! >= 5000) j++;
      most = Math.max(most, i - j + 1);
    }
    assert.ok(most <= 60, `at most ${most} refreshes started within 5 s`);
    assert.ok(f.maxInFlight <= 8);
  });

  test('tokens already expired (an outage) are refreshed at once, at the concurrency bound', async () => {
    const now = new ManualTimers().now();
    const f = fake(200, (i) => now - MIN - i, { latencyMs: 200, maxConcurrency: 16 });
    const r = await f.run();
    assert.equal(r.refreshed.length, 200);
    assert.equal(f.maxInFlight, 16, 'full concurrency, never more');
    // 200 refreshes, 16 at a time, 200 ms each: 13 rounds.
    assert.ok(f.timers.now() - now <= 13 * 200 + 50, `took ${f.timers.now() - now} ms`);
    for (const e of f.rows.values()) assert.ok(e > now + LIFETIME - MIN);
  });

  test('while the process is busy (its event loop late), refreshes in flight are halved down to one; they grow back when it is not', async () => {
    const now = new ManualTimers().now();
    const f = fake(200, (i) => now - MIN - i, { latencyMs: 200, maxConcurrency: 16 });
    let busyUntil = now + 3_000;
    const r = await f.run({ busy: () => f.timers.now() < busyUntil });
    assert.equal(r.refreshed.length, 200, 'every connection still refreshed');
    const late = f.calls.filter((c) => c.at >= now + 1_000 && c.at < busyUntil);
    // 16 in flight at 200 ms each would start 160 in those 2 s; backed off, one or two are in flight (at most 20).
    assert.ok(late.length > 0 && late.length <= 20, `one or two in flight a second into the busy time (${late.length} started in 2 s)`);
    const after = f.calls.filter((c) => c.at >= busyUntil + 2_000 && c.at < busyUntil + 3_000);
    assert.ok(after.length > 5, `grows back once the process is no longer busy (${after.length} started in the second after)`);
    busyUntil = 0;
  });

  test('tokens not due yet are left alone; a forced run does not pace', async () => {
    const now = new ManualTimers().now();
    const f = fake(40, (i) => (i < 20 ? now + 30 * MIN : now + 11 * MIN));
    const r = await f.run({ forced: true });
    assert.equal(f.timers.now() - now <= 5 * 200, true, 'no pacing');
    // The ones at 11 min are due if their point (11 - 10 - up to 5 min before now) has passed.
    const dueNow = [...Array(20).keys()].map((i) => `c${String(i + 20).padStart(5, '0')}`).filter((name) => refreshPoint({ name, expiresAt: now + 11 * MIN }, 10 * MIN, 5 * MIN) <= now);
    assert.deepEqual(r.refreshed.sort(), dueNow.sort());
    assert.ok(dueNow.length > 0 && dueNow.length < 20, 'the spread splits them');
  });

  test('a 429 pauses every refresh for its Retry-After, halves the concurrency, and retries the connection', async () => {
    const now = new ManualTimers().now();
    const f = fake(50, () => now - MIN, { latencyMs: 100, maxConcurrency: 8 });
    f.rateLimits = [7, 7];
    const r = await f.run();
    assert.equal(r.rateLimited, 2);
    assert.equal(r.refreshed.length, 50, 'every connection refreshed in the end');
    assert.deepEqual(r.failed, []);
    assert.equal(f.calls.length, 52, 'the two rate-limited connections were asked again');
    // The first 429 answers at now + 100 ms: nothing starts until 7 s later.
    const firstAnswer = now + 100;
    const during = f.calls.filter((c) => c.at > firstAnswer && c.at < firstAnswer + 7000);
    assert.deepEqual(during, [], 'no token request inside the Retry-After');
    const afterPause = f.calls.filter((c) => c.at >= firstAnswer + 7000);
    assert.ok(afterPause.length > 0);
    // Halved once (8 → 4) for both answers of that wave, then grown back by the successes still in flight: the
    // first round after the pause is below the full 8.
    const firstRound = afterPause.filter((c) => c.at === afterPause[0]!.at);
    assert.ok(firstRound.length < 8, `${firstRound.length} started together after the pause`);
  });

  test('a connection rate-limited again and again counts as failed for this run; the others still finish', async () => {
    const now = new ManualTimers().now();
    const f = fake(3, () => now - MIN, { latencyMs: 10, maxConcurrency: 1 });
    f.rateLimits = [1, 1, 1, 1, 1];
    const r = await f.run();
    assert.equal(r.rateLimited, 5);
    assert.deepEqual(r.failed, ['c00000']);
    assert.deepEqual(r.refreshed.sort(), ['c00001', 'c00002']);
    assert.ok(f.timers.now() - now >= 5000, 'each Retry-After waited out');
  });
});
