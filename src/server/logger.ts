/**
 * The server's JSON logger (pino). Redaction has two layers: pino's path redaction for the places secrets sit in
 * request logs (headers, cookies, bodies), and a formatter that runs every log object through the facade's
 * key-based redact() and masks token-shaped text (Dropbox `sl.` tokens, Bearer credentials, dropkey API keys).
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { redact, redactText } from '../connections/redact.js';

const API_KEY_TEXT = /\bdk_[A-Za-z0-9_-]{20,}/g;
/**
 * Keys the server adds to redact()'s list: OAuth `code` and `state`, API keys, cookies, and anything named
 * *token (a session's csrfToken, a setup or link token), which redact() only knows as exact names.
 */
const SERVER_SECRET_KEYS = /^(cookie|set-cookie|code|state|key|api_?key|_?csrf|.*token)$/i;

export function maskText(s: string): string {
  return redactText(s).replace(API_KEY_TEXT, 'dk_[redacted]');
}

function deepMask(v: unknown, depth = 0): unknown {
  if (depth > 8) return v;
  if (typeof v === 'string') return maskText(v);
  if (Array.isArray(v)) return v.map((x) => deepMask(x, depth + 1));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = SERVER_SECRET_KEYS.test(k) && x != null ? '[redacted]' : deepMask(x, depth + 1);
    return out;
  }
  return v;
}

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'dropkey' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]', '*.authorization', '*.cookie', '*.password', '*.token'],
        censor: '[redacted]',
      },
      formatters: {
        log: (obj) => deepMask(redact(obj)) as Record<string, unknown>,
      },
      hooks: {
        // Messages are free text: mask token shapes there too.
        logMethod(args, method) {
          const a = args as unknown[];
          for (let i = 0; i < a.length; i++) if (typeof a[i] === 'string') a[i] = maskText(a[i] as string);
          method.apply(this, args);
        },
      },
    },
    options.destination,
  );
}
