import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import type { RetryOptions, Sleep } from './types.js';

/**
 * Retries for calls to Dropbox's token endpoint. Transient failures are network errors, timeouts, 5xx and 429
 * (dropbox-api.md §3.3, §3.4: 429 carries Retry-After in seconds, 5xx are retried by the Python SDK with backoff).
 * Everything else (400 invalid_grant, invalid_client...) is final and surfaces at once.
 */

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

function retryAfterOf(err: DropboxApiError): number | undefined {
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
      const ms = retryAfterOf(err);
      return { reason: 'Dropbox is rate limiting requests (HTTP 429)', ...(ms === undefined ? {} : { retryAfterMs: ms }) };
    }
    if (err.status >= 500) {
      const ms = retryAfterOf(err);
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

// One abortable timer for the whole package: the Dropbox client's (re-exported for the facade's callers).
export { defaultSleep } from '../dropbox/retry.js';

export interface ResolvedRetry {
  attempts: number;
  baseDelayMs: number;
  maxTotalWaitMs: number;
  attemptTimeoutMs: number;
}

export function resolveRetry(o: RetryOptions | undefined): ResolvedRetry {
  return {
    attempts: Math.max(1, o?.attempts ?? 4),
    baseDelayMs: Math.max(0, o?.baseDelayMs ?? 500),
    maxTotalWaitMs: Math.max(0, o?.maxTotalWaitMs ?? 30_000),
    attemptTimeoutMs: Math.max(1, o?.attemptTimeoutMs ?? 30_000),
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
  let waited = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(options.signal, attempt);
    } catch (err) {
      if (options.signal?.aborted) {
        throw new DropkeyError(ErrorCodes.CANCELLED, 'The operation was cancelled.', { cause: err });
      }
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
      await sleep(waitMs, options.signal);
    }
  }
}
