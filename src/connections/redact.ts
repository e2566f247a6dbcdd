/**
 * Logging without secrets. dropkey accepts any pino-compatible logger (pino's `(obj, msg)` call shape) and
 * passes every object through `redact` first, so a token can reach a log only by a bug in this file.
 */

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Keys whose values are secrets wherever they appear (compared case-insensitively, `_`/`-` ignored). */
const SECRET_KEYS = new Set([
  'accesstoken',
  'refreshtoken',
  'token',
  'secret',
  'appsecret',
  'clientsecret',
  'password',
  'authorization',
  'codeverifier',
  'authcode',
  'authorizationcode',
  'masterkey',
  'idtoken',
]);

const REDACTED = '[redacted]';

function isSecretKey(key: string): boolean {
  return SECRET_KEYS.has(key.toLowerCase().replace(/[_-]/g, ''));
}

/**
 * Masks anything that looks like a Dropbox token inside free text: short-lived `sl.` tokens (Dropbox OAuth guide: token lifetimes), Bearer and
 * Basic credentials. Used on error messages that quote upstream text.
 */
export function redactText(text: string): string {
  return text
    .replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, `$1 ${REDACTED}`)
    .replace(/\bsl\.[A-Za-z0-9._-]{8,}/g, `sl.${REDACTED}`);
}

/** A deep copy of `value` with secret fields replaced; cycles and depth are bounded. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 6) return '[…]';
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    return { name: value.name, message: redactText(value.message), ...(('code' in value) ? { code: (value as { code: unknown }).code } : {}) };
  }
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isSecretKey(k) && v !== null && v !== undefined ? REDACTED : redact(v, depth + 1);
  }
  return out;
}

const noop = (): void => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

/** Wraps a caller's logger so that every object it receives is redacted. */
export function safeLogger(logger: Partial<Logger> | undefined): Logger {
  if (!logger) return silentLogger;
  const wrap = (level: keyof Logger) => {
    const fn = logger[level];
    if (typeof fn !== 'function') return noop;
    return (obj: object, msg?: string): void => {
      fn.call(logger, redact(obj) as object, msg === undefined ? undefined : redactText(msg));
    };
  };
  return { debug: wrap('debug'), info: wrap('info'), warn: wrap('warn'), error: wrap('error') };
}
