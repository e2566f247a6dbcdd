/**
 * In-memory token buckets keyed by purpose and client (IP), for sign-in, setup and connect links (docs/web-ui.md ("Security")).
 * Per instance on purpose: an attacker spread over N instances gets N times the budget, which still caps online
 * password guessing far below what a 12-character minimum needs. The clock is injected.
 */
import { HttpError, ServerErrorCodes } from '../errors.js';

export interface BucketPolicy {
  /** Burst size. */
  capacity: number;
  /** Tokens added per second. */
  refillPerSecond: number;
}

export const DEFAULT_POLICIES: Record<string, BucketPolicy> = {
  // 10 tries at once, then one every 6 s (600/hour): enough for people, useless for guessing.
  'sign-in': { capacity: 10, refillPerSecond: 1 / 6 },
  setup: { capacity: 10, refillPerSecond: 1 / 6 },
  // Opening or starting a connect link: a page load plus a click or two per attempt.
  'connect-link': { capacity: 30, refillPerSecond: 0.5 },
};

export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #clock: () => number;
  readonly #policies: Record<string, BucketPolicy>;
  readonly #maxKeys: number;

  constructor(clock: () => number, policies: Record<string, BucketPolicy> = DEFAULT_POLICIES, maxKeys = 100_000) {
    this.#clock = clock;
    this.#policies = policies;
    this.#maxKeys = maxKeys;
  }

  /** Takes one token; returns 0 if allowed, else the seconds to wait. */
  take(purpose: string, client: string): number {
    const policy = this.#policies[purpose];
    if (!policy) throw new Error(`no rate-limit policy for "${purpose}"`);
    const key = `${purpose}\u0000${client}`;
    const now = this.#clock();
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.#maxKeys) this.#evict(now);
      b = { tokens: policy.capacity, at: now };
      this.#buckets.set(key, b);
    }
    b.tokens = Math.min(policy.capacity, b.tokens + ((now - b.at) / 1000) * policy.refillPerSecond);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) / policy.refillPerSecond);
  }

  /** Throws DROPKEY_RATE_LIMITED (429 with Retry-After) when the client is out of tokens. */
  check(purpose: string, client: string): void {
    const wait = this.take(purpose, client);
    if (wait > 0) {
      throw new HttpError(ServerErrorCodes.RATE_LIMITED, 'Too many attempts. Wait a moment and try again.', {
        headers: { 'Retry-After': String(wait) },
        details: { retry_after_seconds: wait },
      });
    }
  }

  /** Drops full buckets (they behave exactly like absent ones), keeping memory bounded under a flood of IPs. */
  #evict(now: number): void {
    for (const [key, b] of this.#buckets) {
      const policy = this.#policies[key.slice(0, key.indexOf('\u0000'))];
      if (!policy || b.tokens + ((now - b.at) / 1000) * policy.refillPerSecond >= policy.capacity) this.#buckets.delete(key);
    }
    if (this.#buckets.size >= this.#maxKeys) this.#buckets.clear();
  }
}
