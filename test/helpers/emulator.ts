/**
 * Start an in-process emulator on 127.0.0.1 and port 0, and talk to it over real HTTP: the control API
 * (docs/emulator.md) and raw Dropbox calls. Every test file starts its own instance.
 *
 * The helpers only speak the documented wire contract (docs/emulator.md, https://www.dropbox.com/developers/documentation/http/documentation), never the emulator's
 * internals, so the same calls describe what real Dropbox does.
 */
import { createEmulator } from '../../src/emulator/index.js';

export interface AppSpec {
  key: string;
  secret?: string;
  name: string;
  redirect_uris: string[];
  scopes: string[];
  access: 'full' | 'app_folder';
  team: boolean;
}

export interface AccountSpec {
  email: string;
  given_name?: string;
  surname?: string;
  team?: { name: string };
  team_admin?: boolean;
}

export interface CreatedAccount {
  account_id: string;
  email?: string;
  team_member_id?: string;
  team_id?: string;
  [k: string]: unknown;
}

/** The token endpoint's success body (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token). */
export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  scope?: string;
  refresh_token?: string;
  account_id?: string;
  team_id?: string;
  uid?: string;
  [k: string]: unknown;
}

export interface FaultSpec {
  route: string;
  status: number;
  retry_after?: number;
  count?: number;
  delay_ms?: number;
  body?: unknown;
  reset_connection?: boolean;
}

export interface LoggedRequest {
  method: string;
  path: string;
  status?: number;
  time?: unknown;
  headers?: Record<string, unknown>;
  [k: string]: unknown;
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body when it is JSON, else undefined. */
  json: any;
}

let seq = 0;
/** Unique, readable names so several apps/accounts in one instance never collide. */
export function uniq(prefix: string): string {
  seq += 1;
  return `${prefix}${process.pid.toString(36)}${seq}`;
}

export async function readRaw(res: Response): Promise<RawResponse> {
  const text = await res.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export class ControlError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what} -> HTTP ${status}: ${body.slice(0, 500)}`);
  }
}

export interface StartedEmulator {
  url: string;
  /** The emulator object itself (createEmulator's result), for tests of the library surface. */
  emulator: any;
  control: ReturnType<typeof controlClient>;
  /** Raw fetch to the emulator (real HTTP, or in-process when not listening). */
  fetch: FetchLike;
  /** POST an RPC route with a JSON argument (or no body when arg is undefined). */
  rpc(route: string, arg: unknown, token: string | null, headers?: Record<string, string>): Promise<RawResponse>;
  /** POST an upload-style route: argument in Dropbox-API-Arg, bytes in the body. */
  upload(route: string, arg: unknown, body: Uint8Array, token: string, headers?: Record<string, string>): Promise<RawResponse>;
  /** POST a download-style route; returns the raw bytes too. */
  download(route: string, arg: unknown, token: string, headers?: Record<string, string>): Promise<RawResponse & { bytes: Buffer }>;
  close(): Promise<void>;
}

/** JSON.stringify, then escape 0x7F and every non-ASCII char as \uXXXX, as the JS SDK does (https://www.dropbox.com/developers/documentation/http/documentation). */
export function headerSafeJson(v: unknown): string {
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

export function controlClient(url: string, doFetch: FetchLike = (u, i) => fetch(u, i)) {
  async function call(method: string, path: string, body?: unknown): Promise<any> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    const res = await doFetch(`${url}${path}`, init);
    const raw = await readRaw(res);
    if (res.status >= 300) throw new ControlError(res.status, raw.text, `${method} ${path}`);
    return raw.json;
  }
  return {
    call,
    async createApp(spec: Partial<AppSpec> = {}): Promise<AppSpec & Record<string, unknown>> {
      const full: AppSpec = {
        key: spec.key ?? uniq('appkey'),
        secret: spec.secret ?? uniq('appsecret'),
        name: spec.name ?? uniq('Test App '),
        redirect_uris: spec.redirect_uris ?? ['http://127.0.0.1:53682/callback'],
        scopes: spec.scopes ?? ['account_info.read', 'files.metadata.read', 'files.content.read', 'files.content.write'],
        access: spec.access ?? 'full',
        team: spec.team ?? false,
      };
      const created = (await call('POST', '/_emulator/apps', full)) ?? {};
      return { ...full, ...created };
    },
    async createAccount(spec: Partial<AccountSpec> = {}): Promise<CreatedAccount> {
      const body: AccountSpec = { email: spec.email ?? `${uniq('user')}@example.com`, ...spec };
      return call('POST', '/_emulator/accounts', body);
    },
    async grant(g: { app: string; account: string; scopes?: string[]; token_access_type?: string }): Promise<TokenResponse> {
      return call('POST', '/_emulator/grants', g);
    },
    async fault(f: FaultSpec): Promise<unknown> {
      return call('POST', '/_emulator/faults', f);
    },
    async clearFaults(): Promise<unknown> {
      return call('DELETE', '/_emulator/faults');
    },
    async advanceClock(seconds: number): Promise<unknown> {
      return call('POST', '/_emulator/clock', { advance_seconds: seconds });
    },
    /** The request log, oldest first. Accepts a bare array or an object wrapping it in `requests`. */
    async requests(): Promise<LoggedRequest[]> {
      const body = await call('GET', '/_emulator/requests');
      if (Array.isArray(body)) return body;
      if (body && Array.isArray(body.requests)) return body.requests;
      throw new Error(`GET /_emulator/requests: unexpected body ${JSON.stringify(body).slice(0, 300)}`);
    },
    async clearRequests(): Promise<unknown> {
      return call('DELETE', '/_emulator/requests');
    },
    async reset(): Promise<unknown> {
      return call('POST', '/_emulator/reset');
    },
  };
}

/** A user app + account + offline grant with the usual file scopes: the common starting point of a test. */
export async function userWithToken(
  emu: StartedEmulator,
  opts: { scopes?: string[]; appScopes?: string[]; access?: 'full' | 'app_folder' } = {},
): Promise<{ app: AppSpec; account: CreatedAccount; token: TokenResponse }> {
  const app = await emu.control.createApp({
    ...(opts.appScopes ? { scopes: opts.appScopes } : {}),
    ...(opts.access ? { access: opts.access } : {}),
  });
  const account = await emu.control.createAccount();
  const token = await emu.control.grant({
    app: app.key,
    account: account.account_id,
    token_access_type: 'offline',
    ...(opts.scopes ? { scopes: opts.scopes } : {}),
  });
  return { app, account, token };
}

/**
 * `listen: false` keeps everything in-process through the emulator's own `fetch` (no socket: unit tests);
 * by default it listens on 127.0.0.1 port 0 and every call goes over real HTTP.
 */
export async function startEmulator(
  options: Record<string, unknown> = {},
  how: { listen?: boolean } = {},
): Promise<StartedEmulator> {
  const emulator: any = await createEmulator(options as any);
  let url: string;
  let fetch: FetchLike;
  if (how.listen === false) {
    url = 'http://127.0.0.1:1';
    fetch = async (u, i) => emulator.fetch(new Request(u, i));
  } else {
    const listening = await emulator.listen(0, '127.0.0.1');
    url = String(listening?.url ?? emulator.url).replace(/\/+$/, '');
    if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(url)) throw new Error(`emulator listening on unexpected URL ${url}`);
    fetch = (u, i) => globalThis.fetch(u, i);
  }
  const auth = (token: string | null): Record<string, string> => (token === null ? {} : { Authorization: `Bearer ${token}` });
  return {
    url,
    emulator,
    control: controlClient(url, fetch),
    fetch,
    async rpc(route, arg, token, headers = {}) {
      const init: RequestInit = { method: 'POST', headers: { ...auth(token), ...headers } };
      if (arg !== undefined) {
        init.body = JSON.stringify(arg);
        (init.headers as Record<string, string>)['Content-Type'] ??= 'application/json';
      }
      return readRaw(await fetch(`${url}/2/${route}`, init));
    },
    async upload(route, arg, body, token, headers = {}) {
      const res = await fetch(`${url}/2/${route}`, {
        method: 'POST',
        headers: {
          ...auth(token),
          'Content-Type': 'application/octet-stream',
          'Dropbox-API-Arg': headerSafeJson(arg),
          ...headers,
        },
        body: body as BodyInit,
      });
      return readRaw(res);
    },
    async download(route, arg, token, headers = {}) {
      const res = await fetch(`${url}/2/${route}`, {
        method: 'POST',
        headers: { ...auth(token), 'Dropbox-API-Arg': headerSafeJson(arg), ...headers },
      });
      const bytes = Buffer.from(await res.arrayBuffer());
      let json: unknown;
      try {
        json = JSON.parse(bytes.toString('utf8'));
      } catch {
        json = undefined;
      }
      return { status: res.status, headers: res.headers, text: res.status === 200 || res.status === 206 ? '' : bytes.toString('utf8'), json, bytes };
    },
    async close() {
      await emulator.close();
    },
  };
}
