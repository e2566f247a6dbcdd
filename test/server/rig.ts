/**
 * A dropkey server for tests, built with createApp (no socket for the server itself) on a listening emulator, a
 * temp store, an injected clock and a captured log stream. `call()` goes through app.request(). With
 * `listen: false` the emulator is not listening either: the server reaches it through its own fetch (unit tests).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Dropkey } from '../../src/connections/dropkey.js';
import { dropboxUrlsFromBase } from '../../src/dropbox/hosts.js';
import { createApp, type ServerApp } from '../../src/server/app.js';
import { defaultConfig, type ServerConfig } from '../../src/server/deps.js';
import { ServerEvents, type ServerEvent } from '../../src/server/events.js';
import { createLogger } from '../../src/server/logger.js';
import { createServerMetrics } from '../../src/server/metrics.js';
import { instrumentFetch } from '../../src/server/upstream.js';
import { openStores } from '../../src/store/index.js';
import type { ApiPermission, ServerStore } from '../../src/store/server-types.js';
import type { Store } from '../../src/store/types.js';
import { startEmulator, type StartedEmulator } from '../helpers/emulator.js';

export const PUBLIC_URL = 'http://127.0.0.1:8999';

export interface ServerRig {
  emu: StartedEmulator;
  app: ServerApp;
  dk: Dropkey;
  store: Store;
  serverStore: ServerStore;
  clock: { now: number };
  logs: string[];
  events: ServerEvent[];
  /** Every token the emulator handed out in this test (access and refresh), for log scans. */
  issuedTokens(): Promise<string[]>;
  advance(seconds: number): Promise<void>;
  key(permissions: ApiPermission[], connections: string[] | '*', name?: string): Promise<string>;
  call(method: string, path: string, o?: { key?: string; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  /** A Dropbox app (allowing any loopback redirect) registered as `app`, plus an account. */
  dropboxApp(name?: string): Promise<{ name: string; key: string; secret: string }>;
  /** A connected connection (imported from an emulator offline grant). */
  connection(name: string, app?: string): Promise<{ accountId: string; email: string; refreshToken: string }>;
  close(): Promise<void>;
}

let seq = 0;

export async function makeServerRig(o: { config?: Partial<ServerConfig>; listen?: boolean; emulator?: Record<string, unknown> } = {}): Promise<ServerRig> {
  const emu = await startEmulator(o.emulator ?? {}, { listen: o.listen ?? true });
  const upstreamFetch: typeof fetch =
    o.listen === false ? ((input, init) => emu.emulator.fetch(new Request(input, init))) as typeof fetch : globalThis.fetch;
  const home = mkdtempSync(join(tmpdir(), 'dropkey-serve-'));
  const masterKey = randomBytes(32).toString('base64');
  const clock = { now: Date.now() };
  const stores = await openStores({ home, masterKey });
  const { core: store, server: serverStore } = stores;
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void logs.push(s) } });
  const metrics = createServerMetrics();
  const urls = dropboxUrlsFromBase(emu.url);
  const issued = new Set<string>();
  // Every token the emulator's token endpoint hands dropkey passes here: remember them for the log scans.
  const recording = (async (input: string | URL | Request, init?: RequestInit) => {
    const res = await upstreamFetch(input, init);
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (url.startsWith(urls.token) && res.ok) {
      const body = (await res.clone().json().catch(() => ({}))) as { access_token?: string; refresh_token?: string };
      if (body.access_token) issued.add(body.access_token);
      if (body.refresh_token) issued.add(body.refresh_token);
    }
    return res;
  }) as typeof fetch;
  const upstream = instrumentFetch(recording, urls, metrics);
  const dk = await Dropkey.open({
    store,
    urls,
    fetch: upstream,
    now: () => clock.now,
    sleep: async () => {},
    logger,
    retry: { attemptTimeoutMs: 5_000 },
    lockWaitMs: 5_000,
  });
  const events: ServerEvent[] = [];
  const bus = new ServerEvents();
  bus.on((e) => void events.push(e));
  const app = createApp({
    dropkey: dk,
    serverStore,
    clock: () => clock.now,
    logger,
    config: defaultConfig(PUBLIC_URL, o.config),
    fetch: upstream,
    metrics,
    events: bus,
  });
  const apps = new Map<string, { key: string; secret: string }>();
  const rig: ServerRig = {
    emu,
    app,
    dk,
    store,
    serverStore,
    clock,
    logs,
    events,
    async issuedTokens() {
      return [...issued];
    },
    async advance(seconds) {
      clock.now += seconds * 1000;
      await emu.control.advanceClock(seconds);
    },
    async key(permissions, connections, name) {
      const { key } = await app.services.apiKeys.create({ name: name ?? `key${++seq}`, permissions, connections, actor: 'test' });
      return key;
    },
    call(method, path, c = {}) {
      const headers: Record<string, string> = { ...(c.headers ?? {}) };
      if (c.key) headers['Authorization'] = `Bearer ${c.key}`;
      let body: string | undefined;
      if (c.body !== undefined) {
        headers['Content-Type'] ??= 'application/json';
        body = typeof c.body === 'string' ? c.body : JSON.stringify(c.body);
      }
      return Promise.resolve(app.request(`${PUBLIC_URL}${path}`, { method, headers, ...(body === undefined ? {} : { body }) }));
    },
    async dropboxApp(name = 'main') {
      const spec = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
      await dk.addApp({ name, key: spec.key, secret: spec.secret!, scopes: spec.scopes, access: 'full' });
      const a = { key: spec.key, secret: spec.secret! };
      apps.set(name, a);
      return { name, ...a };
    },
    async connection(name, app = 'main') {
      if (!apps.has(app)) await rig.dropboxApp(app);
      const account = await emu.control.createAccount();
      const grant = await emu.control.grant({ app: apps.get(app)!.key, account: account.account_id, token_access_type: 'offline' });
      issued.add(grant.access_token);
      if (grant.refresh_token) issued.add(grant.refresh_token);
      await dk.import({ connection: name, app, refreshToken: grant.refresh_token! });
      return { accountId: account.account_id, email: String(account.email), refreshToken: grant.refresh_token! };
    },
    async close() {
      await app.stop();
      await dk.close();
      await stores.close();
      await emu.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
  return rig;
}
