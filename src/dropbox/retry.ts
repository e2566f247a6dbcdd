/**
 * dropkey's one retry module, for every call to Dropbox. Transient failures are network errors, timeouts, 5xx and
 * 429 (Retry-After in seconds, https://www.dropbox.com/developers/documentation/http/documentation#error-handling);
 * everything else (400 invalid_grant, invalid_client, 409 route errors...) is final and surfaces at once.
 * Two policies share that classification and the one Sleep (src/sleep.ts):
 * - the API client's (`retryPolicy`, `retryDelay`): exponential back-off with jitter, Dropbox's own wait for 429/503;
 * - the token endpoint's and identity checks' (`resolveRetry`, `withRetry`): a bounded budget of attempts and total
 *   wait, with a per-attempt timeout, for the facade's refreshes, logins, imports and revokes.
 */
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import { defaultSleep, type Sleep } from '../sleep.js';
import { retryAfterOf } from './errors.js';

// ---------------------------------------------------------------- the API client's policy

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
export function backoffDelay(retry: number, policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs' | 'random'>): number {
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

// ---------------------------------------------------------------- what is transient

export interface Transient {
  /** Plain words for lastError and logs, e.g. "Dropbox answered 503". */
  reason: string;
  /** Server-requested wait (Retry-After), in ms. */
  retryAfterMs?: number;
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

function errorChain(err: unknown): unknown[] {
  const out: unknown[] = [];
  let e: unknown = err;
  for (let i = 0; i < 6 && e !== undefined && e !== null; i++) {
    out.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

function retryAfterMsOf(err: DropboxApiError): number | undefined {
  const fromDetails = err.details?.['retryAfter'] ?? err.details?.['retry_after'];
  if (typeof fromDetails === 'number' && Number.isFinite(fromDetails)) return fromDetails * 1000;
  const body = err.error as { retry_after?: unknown } | null | undefined;
  if (body && typeof body === 'object' && typeof body.retry_after === 'number') return body.retry_after * 1000;
  const header = err.response?.headers.get('retry-after');
  if (header && /^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  return undefined;
}

/** Returns how to retry `err`, or undefined when it is final. */
export function classifyTransient(err: unknown): Transient | undefined {
  if (err instanceof DropboxApiError) {
    if (err.status === 429) {
      const ms = retryAfterMsOf(err);
      return { reason: 'Dropbox is rate limiting requests (HTTP 429)', ...(ms === undefined ? {} : { retryAfterMs: ms }) };
    }
    if (err.status >= 500) {
      const ms = retryAfterMsOf(err);
      return { reason: `Dropbox had a server error (HTTP ${err.status})`, ...(ms === undefined ? {} : { retryAfterMs: ms }) };
    }
    return undefined;
  }
  for (const e of errorChain(err)) {
    if (e instanceof DropkeyError) {
      if (e.code === ErrorCodes.DROPBOX_UNAVAILABLE) return { reason: e.message };
      if (e.code !== ErrorCodes.INTERNAL) return undefined;
    }
    const name = (e as { name?: unknown }).name;
    const code = (e as { code?: unknown }).code;
    if (name === 'TimeoutError') return { reason: 'the request to Dropbox timed out' };
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return { reason: `could not reach Dropbox (${code})` };
    if (e instanceof TypeError && /fetch failed|terminated|network/i.test(e.message)) {
      return { reason: 'could not reach Dropbox (network error)' };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- the facade's budgeted policy

export interface RetryOptions {
  /** Attempts in all, the first one included (default 4, like the Python SDK's max_retries_on_error). */
  attempts?: number;
  /** First back-off delay in ms; doubles each time (default 500). */
  baseDelayMs?: number;
  /** Upper bound for the sum of all waits of one operation, Retry-After included (default 30 000). */
  maxTotalWaitMs?: number;
  /** Timeout of one HTTP attempt in ms (default 30 000). */
  attemptTimeoutMs?: number;
  /** Upper bound for one operation, every attempt and wait included (default 60 000): a hung endpoint ends here. */
  totalTimeoutMs?: number;
}

export interface ResolvedRetry {
  attempts: number;
  baseDelayMs: number;
  maxTotalWaitMs: number;
  attemptTimeoutMs: number;
  totalTimeoutMs: number;
}

export function resolveRetry(o: RetryOptions | undefined): ResolvedRetry {
  return {
    attempts: Math.max(1, o?.attempts ?? 4),
    baseDelayMs: Math.max(0, o?.baseDelayMs ?? 500),
    maxTotalWaitMs: Math.max(0, o?.maxTotalWaitMs ?? 30_000),
    attemptTimeoutMs: Math.max(1, o?.attemptTimeoutMs ?? 30_000),
    totalTimeoutMs: Math.max(1, o?.totalTimeoutMs ?? 60_000),
  };
}

/**
 * Runs `fn` until it succeeds, fails finally, or the retry budget is spent. `fn` receives the caller's signal
 * and owns its per-attempt timeout (a timed-out attempt surfaces as a retryable network error, not a
 * cancellation). A Retry-After larger than the remaining wait budget is not
 * honoured by sleeping less: the operation gives up instead, since calling early would only be refused again.
 */
export async function withRetry<T>(
  fn: (signal: AbortSignal | undefined, attempt: number) => Promise<T>,
  options: {
    retry: ResolvedRetry;
    sleep: Sleep;
    signal?: AbortSignal;
    onRetry?: (info: Transient & { attempt: number; waitMs: number }) => void;
  },
): Promise<T> {
  const { retry, sleep } = options;
  // The whole operation's deadline: a hung endpoint would otherwise cost attempts x attemptTimeoutMs in silence.
  const total = new AbortController();
  const timer = setTimeout(() => total.abort(new DOMException('the operation took too long', 'TimeoutError')), retry.totalTimeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, total.signal]) : total.signal;
  const cancelled = (cause: unknown) => new DropkeyError(ErrorCodes.CANCELLED, 'The operation was cancelled.', { cause });
  const gaveUp = (attempt: number, cause: unknown, reason: string | undefined) =>
    new DropkeyError(
      ErrorCodes.DROPBOX_UNAVAILABLE,
      `Dropbox did not answer within ${retry.totalTimeoutMs / 1000} s (${attempt} attempt${attempt === 1 ? '' : 's'})${reason ? `: ${reason}` : ''}.`,
      {
        cause,
        hint: 'Try again in a minute. If it keeps happening, check the network, and the Dropbox URL if one is set (DROPKEY_DROPBOX_URL).',
        details: { attempts: attempt, totalTimeoutMs: retry.totalTimeoutMs },
      },
    );
  let waited = 0;
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(signal, attempt);
      } catch (err) {
        if (options.signal?.aborted) throw cancelled(err);
        if (total.signal.aborted) throw gaveUp(attempt, err, classifyTransient(err)?.reason);
        const transient = classifyTransient(err);
        if (!transient) throw err;
        const backoff = retry.baseDelayMs * 2 ** (attempt - 1);
        const waitMs = transient.retryAfterMs ?? backoff;
        if (attempt >= retry.attempts || waited + waitMs > retry.maxTotalWaitMs) {
          throw new DropkeyError(
            ErrorCodes.DROPBOX_UNAVAILABLE,
            `Dropbox did not answer successfully after ${attempt} attempt${attempt === 1 ? '' : 's'}: ${transient.reason}.`,
            {
              cause: err,
              // No HTTP answer at all is also what a wrong base URL (DROPKEY_DROPBOX_URL, the urls option) looks like.
              hint:
                err instanceof DropboxApiError
                  ? 'This is usually temporary: try again in a minute.'
                  : 'This is usually temporary: try again in a minute. If it keeps happening, check the network, and the Dropbox URL if one is set (DROPKEY_DROPBOX_URL).',
              details: { attempts: attempt },
            },
          );
        }
        options.onRetry?.({ ...transient, attempt, waitMs });
        waited += waitMs;
        try {
          await sleep(waitMs, signal);
        } catch (cause) {
          if (options.signal?.aborted) throw cancelled(cause);
          if (total.signal.aborted) throw gaveUp(attempt, err, transient.reason);
          throw cause;
        }
      }
    }
  } finally {
    clearTimeout(timer);
  }
}
