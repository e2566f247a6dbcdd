/**
 * Pure diagnosis of a pasted token string, for `dropkey doctor --token`. It looks only at the shape; whether
 * Dropbox accepts the token is checked elsewhere. Findings never contain the token: at most a fingerprint of its
 * first 4 characters and its length.
 * Shapes (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token, https://developers.dropbox.com/oauth-guide): short-lived access tokens start with `sl.` (informational only) and are
 * well over 100 characters; refresh tokens and retired long-lived access tokens are both 64 characters of
 * [A-Za-z0-9_-] and cannot be told apart by shape; app keys and secrets are 15 lowercase letters and digits.
 */
import type { Fix } from '../errors.js';

export type TokenKind =
  | 'empty'
  | 'short_lived_access'
  | 'long_lived_or_refresh'
  | 'app_key_or_secret'
  | 'truncated'
  | 'unknown';

export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  /** Stable id, e.g. `token.whitespace`. */
  id: string;
  severity: Severity;
  message: string;
  /** What to do about it, in plain words (no command line). */
  hint: string;
  /** The same as data, when dropkey can do it (src/errors.ts Fix): the CLI prints the command, for example. */
  fix?: Fix;
}

export interface TokenShapeReport {
  kind: TokenKind;
  /** Safe to print: first 4 characters (only for long values) and the length. */
  fingerprint: string;
  findings: Finding[];
}

/** What the user meant to paste, when known: findings then say "a refresh token where an access token belongs". */
export type ExpectedToken = 'access' | 'refresh';

const TOKEN_CHARS = /^[A-Za-z0-9._~+/=-]+$/;
/** Dropbox's short-lived tokens seen in the wild are 140+ characters; anything much shorter was cut. */
const MIN_SHORT_LIVED = 100;

/** `sl.u…(145 chars)`; values under 20 characters show only their length. */
export function tokenFingerprint(value: string): string {
  if (value.length === 0) return '(empty)';
  return value.length >= 20 ? `${value.slice(0, 4)}…(${value.length} chars)` : `(${value.length} chars)`;
}

export interface NormalizedToken {
  /** The cleaned value. It is a secret: never print it. */
  value: string;
  /** Finding ids for what was stripped (whitespace, quotes, Bearer prefix...). */
  stripped: string[];
}

function stripQuotes(s: string): string | undefined {
  const m = /^(["'`])(.*)\1$/s.exec(s);
  if (m) return m[2]!;
  if (/^["'`]|["'`]$/.test(s)) return s.replace(/^["'`]+|["'`]+$/g, '');
  return undefined;
}

/**
 * Removes what is commonly pasted along with a token: surrounding whitespace and newlines, quotes, a
 * `Bearer ` / `Authorization: Bearer ` prefix, a `NAME=` shell assignment, line breaks inside, and picks the
 * right field out of a pasted token JSON.
 */
export function normalizePastedToken(raw: string, expect?: ExpectedToken): NormalizedToken {
  const stripped = new Set<string>();
  let s = raw;
  const trimmed = s.trim();
  if (trimmed !== s) stripped.add('token.whitespace');
  s = trimmed;

  if (s.startsWith('{')) {
    try {
      const j = JSON.parse(s) as Record<string, unknown>;
      const order = expect === 'refresh' ? ['refresh_token', 'access_token'] : ['access_token', 'refresh_token'];
      for (const k of order) {
        const v = j[k];
        if (typeof v === 'string' && v) {
          stripped.add('token.json');
          s = v.trim();
          break;
        }
      }
    } catch {
      // Not JSON after all: judged as it is.
    }
  }
  for (let i = 0; i < 3; i++) {
    const before = s;
    const env = /^(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=\s*(.*)$/s.exec(s);
    if (env && !/^[A-Za-z0-9_-]+=*$/.test(s)) {
      stripped.add('token.assignment');
      s = env[1]!.trim();
    }
    const q = stripQuotes(s);
    if (q !== undefined) {
      stripped.add('token.quotes');
      s = q.trim();
    }
    const bearer = /^(?:authorization\s*:\s*)?bearer\s+(.*)$/is.exec(s);
    if (bearer) {
      stripped.add('token.bearer_prefix');
      s = bearer[1]!.trim();
    }
    if (s === before) break;
  }
  if (/\s/.test(s)) {
    stripped.add('token.inner_whitespace');
    s = s.replace(/\s+/g, '');
  }
  return { value: s, stripped: [...stripped] };
}

const STRIP_FINDINGS: Record<string, Omit<Finding, 'id'>> = {
  'token.whitespace': {
    severity: 'warning',
    message: 'spaces or a line break were pasted along with the token',
    hint: 'copy the token alone; when reading it from a file or variable, strip the trailing newline',
  },
  'token.inner_whitespace': {
    severity: 'error',
    message: 'the token contains spaces or line breaks inside it (it was probably wrapped when copied)',
    hint: 'copy the token again as one line, or pipe it in instead of pasting it',
    fix: { action: 'doctor', token: true },
  },
  'token.quotes': {
    severity: 'warning',
    message: 'quotes were pasted along with the token',
    hint: 'store the token without surrounding quotes (in .env files, write NAME=value)',
  },
  'token.bearer_prefix': {
    severity: 'warning',
    message: 'the "Bearer " prefix was pasted along with the token',
    hint: 'store the token alone; the "Bearer " word belongs only in the Authorization header',
  },
  'token.assignment': {
    severity: 'warning',
    message: 'a variable assignment (NAME=...) was pasted along with the token',
    hint: 'paste only the value after the = sign',
  },
  'token.json': {
    severity: 'info',
    message: 'a JSON token answer was pasted; its token field was used',
    hint: 'paste only the token value next time',
  },
};

function classify(v: string): TokenKind {
  if (v.length === 0) return 'empty';
  if (v.startsWith('sl.')) return v.length < MIN_SHORT_LIVED ? 'truncated' : 'short_lived_access';
  if (/^[A-Za-z0-9_-]{64}$/.test(v)) return 'long_lived_or_refresh';
  if (/^[a-z0-9]{15}$/.test(v)) return 'app_key_or_secret';
  if (/^[A-Za-z0-9_-]{20,63}$/.test(v)) return 'truncated';
  return 'unknown';
}

/** Classifies a pasted string and explains, in plain words with the fix, everything wrong with its shape. */
export function diagnoseTokenShape(raw: string, options: { expect?: ExpectedToken } = {}): TokenShapeReport {
  const { expect } = options;
  const { value, stripped } = normalizePastedToken(raw, expect);
  const findings: Finding[] = stripped.map((id) => ({ id, ...STRIP_FINDINGS[id]! }));
  const kind = classify(value);
  const fp = tokenFingerprint(value);
  // Short values' fingerprint is already "(7 chars)": not "this value ((7 chars))".
  const fpIn = fp.startsWith('(') ? fp : `(${fp})`;
  const add = (id: string, severity: Severity, message: string, hint: string, fix?: Fix) =>
    findings.push({ id, severity, message, hint, ...(fix === undefined ? {} : { fix }) });

  if (/…|\.\.\.|\*{3,}|•/.test(value)) {
    add(
      'token.masked',
      'error',
      'the value contains "…", "..." or "***": it was copied from a screen that hides part of the token',
      'copy the full token from where it was issued (or get one from dropkey for a connected account)',
      { action: 'token' },
    );
  } else if (value && !TOKEN_CHARS.test(value)) {
    add(
      'token.bad_characters',
      'error',
      'the value contains characters that never appear in Dropbox tokens',
      'copy the token again exactly; check that no other text came along',
    );
  }

  switch (kind) {
    case 'empty':
      add('token.empty', 'error', 'no token was given (the value is empty)', 'paste the token, or pipe it in', { action: 'doctor', token: true });
      break;
    case 'short_lived_access':
      if (expect === 'refresh') {
        add(
          'token.access_as_refresh',
          'error',
          `this is a short-lived access token (${fp}, starts with "sl."), not a refresh token`,
          'get a refresh token with a browser login, or import this one as an access token',
          { action: 'login' },
        );
      } else {
        add(
          'token.short_lived',
          'info',
          `this looks like a short-lived access token ${fpIn}: it stops working within 4 hours and cannot be renewed by itself`,
          'for a token that never runs out, connect once with a browser login, then get tokens from dropkey',
          { action: 'login' },
        );
      }
      break;
    case 'long_lived_or_refresh':
      if (expect === 'access') {
        add(
          'token.refresh_as_access',
          'warning',
          `this 64-character value ${fpIn} has the shape of a refresh token (or of an old long-lived access ` +
            'token, which looks the same); a refresh token cannot be sent as a Bearer token',
          'if it is a refresh token, import it, then get access tokens from dropkey',
          { action: 'import', token: 'refresh' },
        );
      } else {
        add(
          'token.long_lived_or_refresh',
          'info',
          `this 64-character value ${fpIn} is shaped like a refresh token (old long-lived access tokens look the same)`,
          expect === 'refresh' ? 'nothing to fix in its shape' : 'to use it as a refresh token, import it',
          expect === 'refresh' ? undefined : { action: 'import', token: 'refresh' },
        );
      }
      break;
    case 'app_key_or_secret':
      add(
        'token.app_credential',
        'error',
        'this 15-character value looks like an app key or app secret, not a token',
        'register the app with its key and secret, then connect with a browser login',
        { action: 'app-add' },
      );
      break;
    case 'truncated':
      add(
        'token.truncated',
        'error',
        value.startsWith('sl.')
          ? `this access token looks cut short: ${value.length} characters, where Dropbox's are well over ${MIN_SHORT_LIVED}`
          : `this value looks cut short: ${value.length} characters, where refresh tokens have 64`,
        'copy the whole token again (some consoles and terminals cut long values), or get a fresh one with a browser login',
        { action: 'login' },
      );
      break;
    case 'unknown':
      if (!findings.some((f) => f.severity === 'error')) {
        add(
          'token.unknown_shape',
          'warning',
          `this value ${fpIn} does not look like any Dropbox token (short-lived ones start with "sl.", refresh tokens have 64 characters)`,
          'check that the right value was copied, or let dropkey check a stored connection instead',
          { action: 'doctor' },
        );
      }
      break;
  }
  return { kind, fingerprint: fp, findings };
}
