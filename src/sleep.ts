/**
 * The one wait every layer uses (Dropbox retries, the refresher, store lock polling, the proxy's back-off).
 * It is injected wherever time passes, so tests run on virtual time (store/virtual-time.ts) and never sleep.
 */

/** Waits `ms`; an abort of `signal` rejects at once with the signal's reason. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

/** A real timer that an abort clears, so a pending long wait never keeps the process alive. */
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
