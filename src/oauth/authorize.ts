/**
 * The authorization step: building the consent-page URL and checking what comes back on the redirect.
 * Sources: https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize (parameters, redirect results, errors).
 */
import { DropkeyError, ErrorCodes, type Fix } from '../errors.js';
import type { DropboxUrls } from '../dropbox/hosts.js';
import { constantTimeEqual } from './pkce.js';

/** Dropbox docs: oauth2/authorize: "state: up to 500 bytes, echoed back". */
export const MAX_STATE_BYTES = 500;

export type TokenAccessType = 'offline' | 'online' | 'legacy';

export interface AuthorizeUrlParams {
  urls: Pick<DropboxUrls, 'authorize'>;
  /** The app key. */
  clientId: string;
  /** Omit for the "no-redirect" flow: Dropbox then shows the code on its page for the user to copy (Dropbox docs: oauth2/authorize). */
  redirectUri?: string;
  state: string;
  /** BASE64URL(SHA256(verifier)); the method is always S256. */
  codeChallenge: string;
  /** A subset of the app's scopes; omitted → every scope configured for the app. */
  scopes?: readonly string[];
  /** `offline` → a refresh token too (what dropkey always asks for); `online` → access token only. */
  tokenAccessType: TokenAccessType;
  /** Also include scopes granted earlier to this user/team. Requires `scopes` (as the Python SDK enforces). */
  includeGrantedScopes?: 'user' | 'team';
  forceReapprove?: boolean;
  forceReauthentication?: boolean;
  disableSignup?: boolean;
  requireRole?: 'work' | 'personal';
  locale?: string;
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

function checkState(state: string, what: string): void {
  if (state.length === 0) {
    throw new DropkeyError(ErrorCodes.INTERNAL, `${what} is empty`);
  }
  if (utf8Length(state) > MAX_STATE_BYTES) {
    throw new DropkeyError(ErrorCodes.INTERNAL, `${what} is longer than Dropbox's ${MAX_STATE_BYTES}-byte limit`);
  }
}

/**
 * Builds `<authorize>?client_id=...&response_type=code&...`. Values are percent-encoded with
 * encodeURIComponent (spaces in `scope` become %20, unambiguous in both query and form decoding). Unlike the JS
 * SDK (dropbox-sdk-js), nothing is left unencoded.
 */
export function buildAuthorizeUrl(p: AuthorizeUrlParams): string {
  if (!p.clientId) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'the app key (client_id) is empty');
  checkState(p.state, 'the OAuth state');
  if (!/^[A-Za-z0-9_-]{43}$/.test(p.codeChallenge)) {
    throw new DropkeyError(ErrorCodes.INTERNAL, 'the PKCE code challenge must be a 43-character base64url SHA-256');
  }
  if (p.includeGrantedScopes !== undefined && (p.scopes === undefined || p.scopes.length === 0)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'include_granted_scopes needs at least one scope to be requested');
  }
  for (const s of p.scopes ?? []) {
    if (!/^[^\s]+$/.test(s)) throw new DropkeyError(ErrorCodes.BAD_INPUT, `invalid scope name ${JSON.stringify(s)}`);
  }

  const params: Array<[string, string]> = [
    ['client_id', p.clientId],
    ['response_type', 'code'],
  ];
  if (p.redirectUri !== undefined) params.push(['redirect_uri', p.redirectUri]);
  params.push(['state', p.state]);
  params.push(['code_challenge', p.codeChallenge]);
  params.push(['code_challenge_method', 'S256']);
  params.push(['token_access_type', p.tokenAccessType]);
  if (p.scopes !== undefined && p.scopes.length > 0) params.push(['scope', p.scopes.join(' ')]);
  if (p.includeGrantedScopes !== undefined) params.push(['include_granted_scopes', p.includeGrantedScopes]);
  if (p.forceReapprove) params.push(['force_reapprove', 'true']);
  if (p.forceReauthentication) params.push(['force_reauthentication', 'true']);
  if (p.disableSignup) params.push(['disable_signup', 'true']);
  if (p.requireRole !== undefined) params.push(['require_role', p.requireRole]);
  if (p.locale !== undefined) params.push(['locale', p.locale]);

  const query = params.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
  const sep = p.urls.authorize.includes('?') ? '&' : '?';
  return `${p.urls.authorize}${sep}${query}`;
}

export interface CallbackResult {
  code: string;
  state: string;
}

function toParams(input: string | URL | URLSearchParams): URLSearchParams {
  if (input instanceof URLSearchParams) return input;
  if (input instanceof URL) return input.searchParams;
  const s = input.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) return new URL(s).searchParams;
  // A path with a query ("/callback?code=..") or a bare query ("?code=.." / "code=..").
  const q = s.includes('?') ? s.slice(s.indexOf('?') + 1) : s;
  return new URLSearchParams(q.split('#')[0]);
}

/** Dropbox-controlled text is shown to the user: keep it short and single-line. */
function shortText(s: string): string {
  const one = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return one.length > 300 ? `${one.slice(0, 300)}…` : one;
}

/** Every failed redirect is fixed the same way: a new login (the connection and app are the caller's to add). */
const LOGIN: Fix = { action: 'login' };

/**
 * Checks a redirect back from the consent page (`?code=..&state=..` or `?error=..&error_description=..&state=..`)
 * and returns the code. `input` is the full redirect URL, the request path with its query, or the query alone.
 * The state is compared in constant time and checked first, before trusting anything else in the redirect
 * (RFC 6749 §10.12).
 */
export function parseCallback(input: string | URL | URLSearchParams, expectedState: string): CallbackResult {
  checkState(expectedState, 'the expected OAuth state');
  let params: URLSearchParams;
  try {
    params = toParams(input);
  } catch (cause) {
    throw new DropkeyError(ErrorCodes.OAUTH_FAILED, 'the redirect address could not be parsed as a URL', {
      cause,
      hint: 'start the login again',
      fix: LOGIN,
      details: { reason: 'bad_callback' },
    });
  }
  const state = params.get('state');
  const loginAgain = 'start a new login';
  if (state === null || state === '') {
    throw new DropkeyError(
      ErrorCodes.OAUTH_FAILED,
      'the redirect from Dropbox carries no state value, so it cannot be matched to this login',
      { hint: loginAgain, fix: LOGIN, details: { reason: 'state_missing' } },
    );
  }
  if (utf8Length(state) > MAX_STATE_BYTES || !constantTimeEqual(state, expectedState)) {
    throw new DropkeyError(
      ErrorCodes.OAUTH_FAILED,
      'the redirect does not belong to this login (state mismatch): it may come from an older login attempt ' +
        'or from another site, so it was refused',
      { hint: loginAgain, fix: LOGIN, details: { reason: 'state_mismatch' } },
    );
  }
  const error = params.get('error');
  if (error !== null) {
    const description = params.get('error_description');
    const said = description ? ` (Dropbox said: ${shortText(description)})` : '';
    if (error === 'access_denied') {
      throw new DropkeyError(
        ErrorCodes.OAUTH_FAILED,
        `access was not granted: you clicked Cancel on Dropbox's consent page, or an admin blocks this app${said}`,
        { hint: 'start the login again and click Allow', fix: LOGIN, details: { reason: 'access_denied', error } },
      );
    }
    throw new DropkeyError(ErrorCodes.OAUTH_FAILED, `Dropbox refused the authorization: ${shortText(error)}${said}`, {
      hint: loginAgain,
      fix: LOGIN,
      details: { reason: 'provider_error', error: shortText(error) },
    });
  }
  const code = params.get('code');
  if (code === null || code.trim() === '') {
    throw new DropkeyError(ErrorCodes.OAUTH_FAILED, 'the redirect from Dropbox carries no authorization code', {
      hint: loginAgain,
      fix: LOGIN,
      details: { reason: 'code_missing' },
    });
  }
  return { code: code.trim(), state };
}
