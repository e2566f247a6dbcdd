/**
 * Retry timing shared by the API client: exponential backoff with jitter for 5xx/network failures, and
 * Dropbox's own wait for 429/503 (Retry-After seconds, §3.3, §3.4; RateLimitError.retry_after defaults to 1).
 */
import { retryAfterOf } from './errors.js';

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export interface RetryPolicy {
  /** Retries after the first attempt (default 3, so 4 attempts at most). */
  maxRetries: number;
  /** First backoff step in ms (default 500); doubles each retry up to maxDelayMs (default 10 000). */
  baseDelayMs: number;
  maxDelayMs: number;
  /** A Retry-After longer than this (seconds, default 60) is not waited out: the error surfaces with it. */
  maxRetryAfterSeconds: number;
  /** Returns a number in [0, 1); injected so tests are deterministic. */
  random: () => number;
  sleep: Sleep;
}

export const defaultSleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export function retryPolicy(p: Partial<RetryPolicy> = {}): RetryPolicy {
  return {
    maxRetries: p.maxRetries ?? 3,
    baseDelayMs: p.baseDelayMs ?? 500,
    maxDelayMs: p.maxDelayMs ?? 10_000,
    maxRetryAfterSeconds: p.maxRetryAfterSeconds ?? 60,
    random: p.random ?? Math.random,
    sleep: p.sleep ?? defaultSleep,
  };
}

/** "Equal jitter": half the exponential step fixed, half random, so retries from many clients spread out. */
export function backoffDelay(retry: number, policy: RetryPolicy): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.round(step / 2 + (step / 2) * policy.random());
}

/**
 * How long to wait before retry number `retry` (0-based) after a retryable error, or undefined if Dropbox asked
 * for a wait longer than the policy allows.
 */
export function retryDelay(err: unknown, retry: number, status: number | undefined, policy: RetryPolicy): number | undefined {
  const after = retryAfterOf(err);
  if (after !== undefined) {
    if (after > policy.maxRetryAfterSeconds) return undefined;
    return after * 1000;
  }
  if (status === 429) return 1000;
  return backoffDelay(retry, policy);
}
