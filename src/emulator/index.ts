/**
 * dropkey's local Dropbox (`dropkey/emulator`): OAuth, users, check, auth, files and team routes on one base URL,
 * a control API under /_emulator/, injected faults and a movable clock. `fetch` is a plain `Request → Response`
 * handler usable without a socket; `listen()` puts it on a port.
 *
 *   const emu = createEmulator();
 *   const { url } = await emu.listen(0);            // http://127.0.0.1:PORT
 *   const tokens = await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL });
 *
 * See docs/emulator.md.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { Api } from './api.js';
import type { EmulatorModule } from './route-module.js';
import { handleControl } from './control.js';
import type { CodeRecord, Core } from './core.js';
import { recordMemberJoined } from './events.js';
import { Faults, RequestLog, ResetConnection, faultResponse, type Fault, type LogEntry } from './faults.js';
import { createFilesModule } from './files/index.js';
import { listen as listenNode } from './node.js';
import { AuthorizePage, tokenEndpoint } from './oauth.js';
import { accountModule } from './routes/account.js';
import { teamModule } from './routes/team.js';
import { defaultSeed } from './seed.js';
import { InputError, State, type AccountInput, type AppInput, type Seed } from './state.js';
import { bugResponse, clientGone, textResponse } from './wire.js';

export * from './seed.js';
export type { Seed, AppInput, AccountInput } from './state.js';
export type { Fault, LogEntry } from './faults.js';

export interface EmulatorOptions {
  /** Lifetime of short-lived access tokens, seconds (Dropbox: 14400, https://developers.dropbox.com/oauth-guide). */
  tokenLifetimeSeconds?: number;
  /** The authorize page approves at once as the first eligible account (headless tests). */
  autoApprove?: boolean;
  /** Keep state (state.json) and file contents (files/) here across restarts. Without it, all is in memory. */
  dataDir?: string;
  /** Serve the /_emulator/ control API over HTTP (default true). The `control` helpers work either way. */
  control?: boolean;
  /** Apps and accounts to start with (default: the demo seed, see seed.ts). Ignored when dataDir holds saved state. */
  seed?: Seed;
  /** The wall clock, epoch ms (default Date.now). POST /_emulator/clock adds to it. */
  clock?: () => number;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Where unexpected errors (bugs) are reported; default: console.error. Never given secrets. */
  onError?: (err: unknown) => void;
}

export interface GrantInput {
  app: string;
  account: string;
  scopes?: string[];
  token_access_type?: 'online' | 'offline' | 'legacy';
}

export interface FaultInput {
  route: string;
  status?: number;
  retry_after?: number;
  count?: number;
  delay_ms?: number;
  body?: unknown;
  reset_connection?: boolean;
}

/** Typed helpers for the control API; they work even with `control: false` (they do not go through HTTP). */
export interface EmulatorControl {
  createApp(app: AppInput): Promise<Record<string, any>>;
  createAccount(account: AccountInput): Promise<Record<string, any>>;
  grant(g: GrantInput): Promise<Record<string, any>>;
  fault(f: FaultInput): Promise<Fault>;
  clearFaults(): Promise<void>;
  advanceClock(seconds: number): Promise<void>;
  requests(): Promise<LogEntry[]>;
  clearRequests(): Promise<void>;
  reset(): Promise<void>;
  /** Every app, secrets included (GET /_emulator/apps). */
  apps(): Promise<Record<string, any>[]>;
  /** Every account (GET /_emulator/accounts). */
  accounts(): Promise<Record<string, any>[]>;
}

export interface Emulator {
  /** Serves one request. Rejects with a TypeError("fetch failed") when a reset_connection fault hits, like fetch. */
  fetch(req: Request): Promise<Response>;
  control: EmulatorControl;
  listen(port?: number, host?: string): Promise<{ url: string }>;
  /** The base URL once listening. */
  readonly url: string | undefined;
  close(): Promise<void>;
}

const OAUTH_ROUTES: Record<string, string> = {
  '/oauth2/authorize': 'oauth2/authorize',
  '/1/oauth2/authorize': 'oauth2/authorize',
  '/oauth2/token': 'oauth2/token',
  '/1/oauth2/token': 'oauth2/token',
};

const CORS_HEADERS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Dropbox-API-Result, X-Dropbox-Request-Id, Content-Range, Retry-After',
};

export function createEmulator(options: EmulatorOptions = {}): Emulator {
  const clock = options.clock ?? Date.now;
  const onError = options.onError ?? ((err: unknown) => console.error('dropkey emulator: unexpected error:', err));
  const lifetime = options.tokenLifetimeSeconds ?? 14400;
  if (!Number.isInteger(lifetime) || lifetime < 1) throw new TypeError('tokenLifetimeSeconds must be a positive integer');
  const state = new State(options.dataDir);
  const files = createFilesModule({
    ...(options.dataDir !== undefined ? { dataDir: join(options.dataDir, 'files') } : {}),
    now: () => core.now(),
  });
  let saltCounter = 0;
  const core: Core = {
    state,
    now: () => clock() + state.clockOffsetMs,
    tokenLifetimeSeconds: lifetime,
    autoApprove: options.autoApprove === true,
    save: () => state.save(core.now()),
    salt: () => saltCounter++,
    codes: new Map<string, CodeRecord>(),
    usedBytes: (ns) => files.usedBytes(ns),
  };
  const modules: EmulatorModule[] = [accountModule(core), teamModule(core), files];
  const api = new Api(core, modules.flatMap((m) => m.routes), onError);
  const authorize = new AuthorizePage(core);
  const faults = new Faults();
  const log = new RequestLog();

  const addAccount = (input: AccountInput) => {
    const r = state.upsertAccount(input, core.now());
    const team = r.account.team_id ? state.teams.get(r.account.team_id) : undefined;
    if (r.created && team) recordMemberJoined(state, r.account, team, core.now());
    return r;
  };
  const applySeed = (seed: Seed) => {
    try {
      for (const app of seed.apps ?? []) state.upsertApp(app);
      for (const account of seed.accounts ?? []) addAccount(account);
    } catch (err) {
      if (err instanceof InputError) throw new TypeError(`invalid emulator seed: ${err.message}`);
      throw err;
    }
  };
  if (!state.load()) {
    applySeed(options.seed ?? defaultSeed());
    core.save();
  }

  const reset = async () => {
    state.clear();
    core.codes.clear();
    authorize.reset();
    faults.clear();
    log.clear();
    for (const m of modules) await m.reset();
    applySeed(options.seed ?? defaultSeed());
    core.save();
  };
  const controlDeps = { core, faults, log, addAccount, reset };

  async function route(req: Request, url: URL, name: string | undefined): Promise<Response> {
    const path = url.pathname;
    if (name === 'oauth2/authorize') return authorize.handle(req, url);
    if (name !== undefined) {
      // Browser apps call the API and the token endpoint cross-origin (PKCE without a secret).
      if (req.method === 'OPTIONS') {
        return new Response(null, {
          status: 204,
          headers: {
            'Access-Control-Allow-Methods': 'POST, GET, OPTIONS',
            'Access-Control-Allow-Headers':
              'Authorization, Content-Type, Dropbox-API-Arg, Dropbox-API-Select-User, Dropbox-API-Select-Admin, Dropbox-API-Path-Root, Range',
            'Access-Control-Max-Age': '600',
          },
        });
      }
      if (name === 'oauth2/token') return tokenEndpoint(core, req, url);
      return api.handle(req, url, name);
    }
    if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      return textResponse('dropkey emulator: a local Dropbox. OAuth at /oauth2/authorize and /oauth2/token, API at /2/<route>, control API at /_emulator/. See docs/emulator.md.\n', 200);
    }
    return textResponse(`Not found: ${path}`, 404);
  }

  /** Serves a request; throws ResetConnection for a reset_connection fault (the listener drops the socket). */
  async function handle(req: Request): Promise<Response> {
    const started = performance.now();
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      return textResponse('Bad request: malformed URL', 400);
    }
    const path = url.pathname;
    if (path === '/_emulator' || path.startsWith('/_emulator/')) {
      const res = options.control === false ? textResponse(`Not found: ${path} (the control API is disabled)`, 404) : await handleControl(controlDeps, req, url);
      res.headers.set('Date', new Date(core.now()).toUTCString());
      return res;
    }
    const name = OAUTH_ROUTES[path] ?? (path.startsWith('/2/') ? path.slice(3) : undefined);
    const requestId = randomBytes(16).toString('hex');
    let fault: Fault | undefined;
    let res: Response;
    try {
      fault = name !== undefined && req.method !== 'OPTIONS' ? faults.take(name) : undefined;
      if (fault?.delay_ms) await delay(fault.delay_ms, req.signal);
      if (fault?.reset_connection) throw new ResetConnection();
      res = (fault && faultResponse(fault, name!, core.salt())) ?? (await route(req, url, name));
    } catch (err) {
      if (err instanceof ResetConnection) {
        log.record({ time: new Date(core.now()).toISOString(), method: req.method, path, ...(name ? { route: name } : {}), status: 0, duration_ms: Math.round(performance.now() - started), request_id: requestId, fault: fault!.id }, req, url);
        throw err;
      }
      res = req.signal.aborted ? clientGone() : bugResponse(err, onError);
    }
    // Whatever the handler did not read of the body is discarded (the listener drains it, keeping the socket).
    if (req.body && !req.bodyUsed && !req.body.locked) await req.body.cancel().catch(() => {});
    res.headers.set('X-Dropbox-Request-Id', requestId);
    // The emulator clock, so clients that compare clocks see the time POST /_emulator/clock set.
    res.headers.set('Date', new Date(core.now()).toUTCString());
    if (name !== undefined && name !== 'oauth2/authorize') for (const [k, v] of Object.entries(CORS_HEADERS)) res.headers.set(k, v);
    log.record(
      {
        time: new Date(core.now()).toISOString(),
        method: req.method,
        path,
        ...(name ? { route: name } : {}),
        status: res.status,
        duration_ms: Math.round(performance.now() - started),
        request_id: requestId,
        ...(fault ? { fault: fault.id } : {}),
      },
      req,
      url,
    );
    return res;
  }

  async function controlCall<T>(method: string, path: string, body?: unknown): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    const url = new URL(path, 'http://emulator.invalid');
    const res = await handleControl(controlDeps, new Request(url, init), url);
    const json = (await res.json()) as T & { error_description?: string };
    if (res.status >= 300) throw new Error(`${method} ${path}: HTTP ${res.status}: ${json.error_description ?? ''}`);
    return json;
  }

  let server: Server | undefined;
  let baseUrl: string | undefined;
  const control: EmulatorControl = {
    createApp: (app) => controlCall('POST', '/_emulator/apps', app),
    createAccount: (account) => controlCall('POST', '/_emulator/accounts', account),
    grant: (g) => controlCall('POST', '/_emulator/grants', g),
    fault: (f) => controlCall('POST', '/_emulator/faults', f),
    clearFaults: async () => void (await controlCall('DELETE', '/_emulator/faults')),
    advanceClock: async (seconds) => void (await controlCall('POST', '/_emulator/clock', { advance_seconds: seconds })),
    requests: async () => (await controlCall<{ requests: LogEntry[] }>('GET', '/_emulator/requests')).requests,
    clearRequests: async () => void (await controlCall('DELETE', '/_emulator/requests')),
    reset: async () => void (await controlCall('POST', '/_emulator/reset')),
    apps: async () => (await controlCall<{ apps: Record<string, any>[] }>('GET', '/_emulator/apps')).apps,
    accounts: async () => (await controlCall<{ accounts: Record<string, any>[] }>('GET', '/_emulator/accounts')).accounts,
  };

  return {
    async fetch(req: Request): Promise<Response> {
      try {
        return await handle(req);
      } catch (err) {
        if (err instanceof ResetConnection) {
          throw new TypeError('fetch failed', { cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) });
        }
        throw err;
      }
    },
    control,
    async listen(port = 0, host = '127.0.0.1') {
      if (server) throw new Error('the emulator is already listening');
      const l = await listenNode(handle, { port, host, ...(options.tls ? { tls: options.tls } : {}) }, onError);
      server = l.server;
      baseUrl = l.url;
      return { url: l.url };
    },
    get url() {
      return baseUrl;
    },
    async close() {
      if (server) {
        const s = server;
        server = undefined;
        await new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeAllConnections();
        });
      }
      for (const m of modules) await m.close?.();
    },
  };
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

