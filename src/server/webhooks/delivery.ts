/**
 * The webhook delivery worker: sends queued events (the outbox in WebhookStore) to their endpoints, signed, with
 * bounded exponential back-off, at least once.
 *
 * - Claims: due deliveries are claimed with a lease longer than one attempt, so several instances (or a restarted
 *   one) never send the same attempt twice, and a worker that dies mid-attempt only delays it until the lease ends.
 * - Attempts: POST with the event JSON, Dropkey-Signature (signing.ts), Dropkey-Event-Id (receivers dedupe on it),
 *   a timeout, and redirect: 'manual': a 3xx is a failed attempt, never followed, so a receiver cannot bounce
 *   signed events (or our requests) to another host.
 * - Back-off: 1 min, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after attempts 1..7 (8 attempts over about a day, like
 *   Stripe's and GitHub's schedules), measured on the injected timers, so tests move through it instantly.
 * - Wake-ups: a kick when this instance queues an event, the earliest due time, and a poll for events queued by
 *   other instances.
 */
import type { AttemptOutcome, ClaimedDelivery, WebhookStore } from '../../store/webhook-types.js';
import type { Logger } from '../deps.js';
import type { TimerHandle, Timers } from '../jobs/timers.js';
import { ATTEMPT_HEADER, DELIVERY_ID_HEADER, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, signWebhook } from './signing.js';

export const DEFAULT_RETRY_SCHEDULE_MS: readonly number[] = [60_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];

export interface DeliveryWorkerOptions {
  store: WebhookStore;
  timers: Timers;
  /** The fetch used to reach receivers (default globalThis.fetch). */
  fetch?: typeof fetch;
  logger: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** Wait after attempt n (index n-1); attempts in all = length + 1. */
  retryScheduleMs?: readonly number[];
  /** One attempt's timeout (default 10 s). */
  timeoutMs?: number;
  /** How often to look for deliveries queued elsewhere (default 15 s). */
  pollMs?: number;
  /** Deliveries sent at once (default 4). */
  concurrency?: number;
  /** Called after every recorded attempt (tests and metrics wait on it). */
  onAttempt?: (delivery: ClaimedDelivery['delivery'], outcome: AttemptOutcome) => void;
}

const USER_AGENT = 'dropkey-webhooks/1';

function describeNetworkError(err: unknown, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `The receiver did not answer within ${Math.round(timeoutMs / 1000)} s (timeout).`;
  const cause = (err as { cause?: { code?: unknown; message?: unknown } })?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  if (code === 'ECONNREFUSED') return 'Could not connect to the receiver (connection refused).';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'Could not resolve the receiver\'s host name.';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'The receiver closed the connection before answering.';
  if (code && /CERT|SSL|TLS/.test(code)) return `The receiver's TLS certificate was not accepted (${code}).`;
  return `Could not reach the receiver${code ? ` (${code})` : ''}.`;
}

export class DeliveryWorker {
  readonly #o: Required<Omit<DeliveryWorkerOptions, 'onAttempt'>> & Pick<DeliveryWorkerOptions, 'onAttempt'>;
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #stopped = new AbortController();
  #timer: TimerHandle | undefined;
  #timerAt: number | undefined;
  #pass: Promise<void> | undefined;
  #again = false;
  #started = false;

  constructor(options: DeliveryWorkerOptions) {
    this.#o = {
      fetch: (input, init) => globalThis.fetch(input, init),
      retryScheduleMs: DEFAULT_RETRY_SCHEDULE_MS,
      timeoutMs: 10_000,
      pollMs: 15_000,
      concurrency: 4,
      ...options,
    };
  }

  get maxAttempts(): number {
    return this.#o.retryScheduleMs.length + 1;
  }

  start(): void {
    if (this.#started || this.#stopped.signal.aborted) return;
    this.#started = true;
    this.kick();
  }

  /** Looks for due deliveries now (after an event was queued). Coalesces: at most one pass runs at a time. */
  kick(): void {
    if (!this.#started || this.#stopped.signal.aborted) return;
    if (this.#pass) {
      this.#again = true;
      return;
    }
    this.#pass = this.#runPasses().finally(() => {
      this.#pass = undefined;
    });
    this.#track(this.#pass);
  }

  /**
   * Claims the given deliveries (if due and unclaimed) and attempts them now, whether or not the worker was
   * started: the admin API's test send. Returns what happened to each one claimed.
   */
  async deliverNow(ids: string[]): Promise<AttemptOutcome[]> {
    const claimed = await this.#o.store.claimDue(this.#o.timers.now(), this.#leaseMs(), ids.length, ids);
    const p = Promise.all(claimed.map((c) => this.#attempt(c)));
    this.#track(p);
    return p;
  }

  /** Resolves when no pass or attempt is running. */
  async idle(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  async stop(): Promise<void> {
    this.#stopped.abort();
    if (this.#timer !== undefined) this.#o.timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.idle();
  }

  #leaseMs(): number {
    // Longer than one attempt with its timeout, with room for a slow database write.
    return this.#o.timeoutMs + 60_000;
  }

  #track(p: Promise<unknown>): void {
    this.#inflight.add(p);
    void p.catch(() => undefined).finally(() => this.#inflight.delete(p));
  }

  async #runPasses(): Promise<void> {
    do {
      this.#again = false;
      try {
        await this.#onePass();
        // Deliveries that fell due while this pass ran (or a kick that arrived meanwhile): go again now.
        if (!this.#again && !this.#stopped.signal.aborted) {
          const wait = await this.#nextWait();
          if (wait === 0) this.#again = true;
          else this.#arm(wait);
        }
      } catch (err) {
        this.#o.logger.error({ err }, 'webhook delivery pass failed');
        this.#arm(this.#o.pollMs);
      }
    } while (this.#again && !this.#stopped.signal.aborted);
  }

  async #onePass(): Promise<void> {
    const { store, timers, concurrency } = this.#o;
    for (;;) {
      if (this.#stopped.signal.aborted) return;
      const batch = await store.claimDue(timers.now(), this.#leaseMs(), concurrency);
      if (batch.length === 0) return;
      await Promise.all(batch.map((c) => this.#attempt(c)));
      if (batch.length < concurrency) return;
    }
  }

  /** Until the earliest pending delivery is due (0: now), at most the poll interval. */
  async #nextWait(): Promise<number> {
    const next = await this.#o.store.nextDueAt();
    if (next === null) return this.#o.pollMs;
    return Math.min(Math.max(next - this.#o.timers.now(), 0), this.#o.pollMs);
  }

  #arm(waitMs: number): void {
    if (this.#stopped.signal.aborted) return;
    const at = this.#o.timers.now() + waitMs;
    if (this.#timer !== undefined) {
      if (this.#timerAt !== undefined && this.#timerAt <= at) return;
      this.#o.timers.clearTimeout(this.#timer);
    }
    this.#timerAt = at;
    this.#timer = this.#o.timers.setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = undefined;
      this.kick();
    }, waitMs);
  }

  async #attempt(c: ClaimedDelivery): Promise<AttemptOutcome> {
    const { timers, timeoutMs, logger, store } = this.#o;
    const attempt = c.delivery.attempts + 1;
    const at = timers.now();
    const started = performance.now();
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'User-Agent': USER_AGENT,
      [EVENT_ID_HEADER]: c.delivery.eventId,
      [EVENT_TYPE_HEADER]: c.delivery.eventType,
      [DELIVERY_ID_HEADER]: c.delivery.id,
      [ATTEMPT_HEADER]: String(attempt),
      [SIGNATURE_HEADER]: signWebhook(c.secret, c.body, Math.floor(at / 1000)),
    };
    const ac = new AbortController();
    let timedOut = false;
    const timer = timers.setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    const onStop = () => ac.abort();
    this.#stopped.signal.addEventListener('abort', onStop, { once: true });
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      const res = await this.#o.fetch(c.delivery.endpointUrl, { method: 'POST', headers, body: c.body, redirect: 'manual', signal: ac.signal });
      statusCode = res.status;
      // The answer's body is not used; cancelling it frees the socket without reading a large or endless reply.
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 300 && res.status < 400) {
        error = `The receiver answered with a redirect (HTTP ${res.status}); dropkey does not follow redirects. Configure the final URL.`;
      } else if (res.status < 200 || res.status >= 300) {
        error = `The receiver answered HTTP ${res.status}.`;
      }
    } catch (err) {
      error = this.#stopped.signal.aborted && !timedOut ? 'The server shut down during the attempt.' : describeNetworkError(err, timedOut, timeoutMs);
    } finally {
      timers.clearTimeout(timer);
      this.#stopped.signal.removeEventListener('abort', onStop);
    }
    const durationMs = Math.round(performance.now() - started);
    let outcome: AttemptOutcome;
    if (error === null) {
      outcome = { attempt, at, statusCode, error: null, durationMs, result: 'succeeded', nextAttemptAt: null };
    } else if (attempt < this.maxAttempts) {
      const wait = this.#o.retryScheduleMs[attempt - 1]!;
      outcome = { attempt, at, statusCode, error, durationMs, result: 'retry', nextAttemptAt: timers.now() + wait };
    } else {
      outcome = { attempt, at, statusCode, error, durationMs, result: 'failed', nextAttemptAt: null };
    }
    try {
      await store.recordAttempt(c.delivery.id, outcome);
    } catch (err) {
      // The claim's lease runs out and the attempt is made again: at-least-once, receivers dedupe on the event id.
      logger.error({ err, delivery: c.delivery.id }, 'could not record a webhook attempt');
    }
    const log = outcome.result === 'succeeded' ? 'debug' : 'warn';
    logger[log](
      { delivery: c.delivery.id, event: c.delivery.eventType, endpoint: c.delivery.endpointId, attempt, status: statusCode, result: outcome.result },
      outcome.result === 'succeeded' ? 'webhook delivered' : `webhook attempt failed: ${error}`,
    );
    try {
      this.#o.onAttempt?.(c.delivery, outcome);
    } catch {
      // an observer's failure is not the delivery's
    }
    if (outcome.result === 'retry') this.#arm(Math.max(0, outcome.nextAttemptAt! - timers.now()));
    return outcome;
  }
}
