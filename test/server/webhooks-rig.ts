/**
 * Test rig for background work and webhooks: one emulator and one store (a temp home) shared by any number of
 * server instances (each with its own store handles, facade, events and app, like separate processes), all on
 * one ManualTimers, which is also the emulator's and the facade's clock. Time moves only when a test says so.
 * Plus a webhook receiver on 127.0.0.1:0 whose answers the test scripts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Dropkey } from '../../src/connections/dropkey.js';
import { dropboxUrlsFromBase } from '../../src/dropbox/hosts.js';
import { createApp, MODULES, type ServerApp } from '../../src/server/app.js';
import type { ServerModule } from '../../src/server/context.js';
import { defaultConfig } from '../../src/server/deps.js';
import { ServerEvents, type ServerEvent } from '../../src/server/events.js';
import { createJobsModule, type JobsOptions } from '../../src/server/jobs/index.js';
import type { RunResult } from '../../src/server/jobs/scheduler.js';
import { ManualTimers } from '../../src/server/jobs/timers.js';
import { createLogger } from '../../src/server/logger.js';
import { createServerMetrics } from '../../src/server/metrics.js';
import { instrumentFetch } from '../../src/server/upstream.js';
import { createWebhooksModule } from '../../src/server/webhooks/index.js';
import { webhookService, type WebhookOptions } from '../../src/server/webhooks/service.js';
import { openStores } from '../../src/store/index.js';
import type { ApiPermission, ServerStore } from '../../src/store/server-types.js';
import type { Store } from '../../src/store/types.js';
import type { AttemptOutcome, DeliveryRecord, WebhookStore } from '../../src/store/webhook-types.js';
import { startEmulator, type StartedEmulator } from '../helpers/emulator.js';

export const PUBLIC_URL = 'http://127.0.0.1:8999';

export interface Instance {
  app: ServerApp;
  dk: Dropkey;
  store: Store;
  serverStore: ServerStore;
  webhookStore: WebhookStore;
  events: ServerEvent[];
  attempts: { delivery: DeliveryRecord; outcome: AttemptOutcome }[];
  jobResults: { job: string; result: RunResult }[];
  logs: string[];
  /** Waits until this instance's delivery worker and scheduler are idle (timers armed, nothing in flight). */
  settle(): Promise<void>;
  /** Resolves on the next n-th delivery attempt recorded by this instance (counting from now). */
  nextAttempts(n?: number): Promise<AttemptOutcome[]>;
  key(permissions: ApiPermission[], connections: string[] | '*'): Promise<string>;
  call(method: string, path: string, o?: { key?: string; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  /** Stops background work and closes this instance's handles (the database stays). */
  close(): Promise<void>;
}

export interface Rig {
  emu: StartedEmulator;
  timers: ManualTimers;
  home: string;
  masterKey: string;
  /** `ui`: also mount the web UI with its webhooks page. */
  instance(o?: { webhooks?: WebhookOptions; jobs?: JobsOptions; start?: boolean; ui?: boolean }): Promise<Instance>;
  /** A Dropbox app registered in the store as `name` (allowing any loopback redirect). */
  dropboxApp(dk: Dropkey, name?: string): Promise<{ key: string; secret: string }>;
  /** A connection imported from an emulator offline grant. */
  connection(dk: Dropkey, name: string, app?: string): Promise<{ accountId: string; refreshToken: string; accessToken: string }>;
  /** Refresh-token grants the emulator answered so far. */
  refreshGrants(): Promise<number>;
  close(): Promise<void>;
}

let keySeq = 0;

/**
 * `databaseUrl`: run every instance on PostgreSQL (a fresh schema, dropped on close) instead of SQLite in the temp
 * home, to show the same behaviour on a cluster's store (docs/deploying.md ("What the cluster guarantees")).
 */
export async function makeRig(o: { databaseUrl?: string } = {}): Promise<Rig> {
  const timers = new ManualTimers(Math.floor(Date.now() / 1000) * 1000);
  const emu = await startEmulator({ clock: timers.clock });
  const home = mkdtempSync(join(tmpdir(), 'dropkey-jobs-'));
  const masterKey = randomBytes(32).toString('base64');
  const urls = dropboxUrlsFromBase(emu.url);
  const instances: Instance[] = [];
  const apps = new Map<string, { key: string; secret: string }>();
  const pg = o.databaseUrl ? { url: o.databaseUrl, schema: `dropkey_jobs_${randomBytes(6).toString('hex')}` } : undefined;

  const rig: Rig = {
    emu,
    timers,
    home,
    masterKey,
    async instance(o = {}) {
      const stores = await openStores({ home, masterKey, ...(pg ? { databaseUrl: `${pg.url}${pg.url.includes('?') ? '&' : '?'}schema=${pg.schema}` } : {}) });
      const { core: store, server: serverStore, webhooks: webhookStore } = stores;
      const logs: string[] = [];
      const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void logs.push(s) } });
      const metrics = createServerMetrics();
      const upstream = instrumentFetch(globalThis.fetch, urls, metrics);
      const dk = await Dropkey.open({ store, urls, fetch: upstream, now: timers.clock, sleep: async () => {}, logger, retry: { attemptTimeoutMs: 5_000, attempts: 2 }, lockWaitMs: 5_000 });
      const events: ServerEvent[] = [];
      const bus = new ServerEvents((err) => logs.push(`event listener failed: ${String(err)}`));
      bus.on((e) => void events.push(e));
      const attempts: Instance['attempts'] = [];
      let waiters: { n: number; got: AttemptOutcome[]; resolve: (v: AttemptOutcome[]) => void }[] = [];
      const jobResults: Instance['jobResults'] = [];
      const webhooks = createWebhooksModule({
        timers,
        ...o.webhooks,
        onAttempt: (delivery, outcome) => {
          attempts.push({ delivery, outcome });
          for (const w of waiters) w.got.push(outcome);
          waiters = waiters.filter((w) => (w.got.length >= w.n ? (w.resolve(w.got), false) : true));
          o.webhooks?.onAttempt?.(delivery, outcome);
        },
      });
      const jobs = createJobsModule({ timers, random: () => 0.5, ...o.jobs, onResult: (job, result) => void jobResults.push({ job, result }) });
      const ui = MODULES.find((m) => m.name === 'ui');
      const uiPages: ServerModule[] = o.ui && ui ? [ui] : [];
      const modules = [...MODULES.filter((m) => m.name !== 'webhooks' && m.name !== 'jobs' && m.name !== 'ui'), webhooks, jobs, ...uiPages];
      const app = createApp(
        { dropkey: dk, serverStore, webhookStore, clock: timers.clock, logger, config: defaultConfig(PUBLIC_URL), fetch: upstream, metrics, events: bus },
        { modules },
      );
      if (o.start !== false) app.start();
      const inst: Instance = {
        app,
        dk,
        store,
        serverStore,
        webhookStore,
        events,
        attempts,
        jobResults,
        logs,
        async settle() {
          for (let k = 0; k < 3; k++) {
            await new Promise((r) => setImmediate(r));
            await webhookService(app.services).worker.idle();
            await app.services.scheduler?.idle();
          }
        },
        nextAttempts(n = 1) {
          return new Promise((resolve) => waiters.push({ n, got: [], resolve }));
        },
        async key(permissions, connections) {
          return (await app.services.apiKeys.create({ name: `key${++keySeq}`, permissions, connections, actor: 'test' })).key;
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
        async close() {
          const i = instances.indexOf(inst);
          if (i >= 0) instances.splice(i, 1);
          await app.stop();
          await dk.close();
          await stores.close();
        },
      };
      instances.push(inst);
      return inst;
    },
    async dropboxApp(dk, name = 'main') {
      let a = apps.get(name);
      if (!a) {
        const spec = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
        a = { key: spec.key, secret: spec.secret! };
        apps.set(name, a);
      }
      if (!(await dk.listApps()).some((x) => x.name === name)) {
        await dk.addApp({ name, key: a.key, secret: a.secret, scopes: ['account_info.read', 'files.metadata.read'], access: 'full' });
      }
      return a;
    },
    async connection(dk, name, app = 'main') {
      const a = await rig.dropboxApp(dk, app);
      const account = await emu.control.createAccount();
      const grant = await emu.control.grant({ app: a.key, account: account.account_id, token_access_type: 'offline' });
      await dk.import({ connection: name, app, refreshToken: grant.refresh_token! });
      const token = await dk.getAccessToken(name);
      return { accountId: account.account_id, refreshToken: grant.refresh_token!, accessToken: token };
    },
    async refreshGrants() {
      const log = (await emu.control.call('GET', '/_emulator/requests')) as { requests?: { path: string; status?: number; grant_type?: string }[] } | { path: string }[];
      const list = Array.isArray(log) ? log : (log.requests ?? []);
      return list.filter((r) => r.path === '/oauth2/token' && (r as { status?: number }).status === 200).length;
    },
    async close() {
      for (const i of [...instances].reverse()) await i.close();
      await emu.close();
      rmSync(home, { recursive: true, force: true });
      if (pg) {
        const { dropSchema } = await import('../../src/store/postgres/test-helpers.test-support.js');
        await dropSchema(pg.schema);
      }
    },
  };
  return rig;
}

// ---------------------------------------------------------------- receiver

export interface Received {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What the receiver does with the next request: answer with a status, hang until released, or redirect. */
export type Behaviour = number | 'hang' | { redirect: string };

export interface Receiver {
  url: string;
  received: Received[];
  /** Answers for the next requests, in order; when empty, 200. */
  script: Behaviour[];
  /** Resolves when the n-th request (1-based, counting all so far) has arrived. */
  waitFor(n: number): Promise<Received>;
  /** Ends every hanging request with `status`. */
  release(status?: number): void;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const hanging: ServerResponse[] = [];
  let waiters: { n: number; resolve: (r: Received) => void }[] = [];
  const r: Receiver = {
    url: '',
    received,
    script: [],
    waitFor(n) {
      if (received.length >= n) return Promise.resolve(received[n - 1]!);
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    release(status = 200) {
      for (const res of hanging.splice(0)) if (!res.writableEnded) res.writeHead(status).end();
    },
    async close() {
      r.release(503);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: Received = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      const behaviour = r.script.shift() ?? 200;
      if (behaviour === 'hang') hanging.push(res);
      else if (typeof behaviour === 'object') res.writeHead(302, { Location: behaviour.redirect }).end();
      else res.writeHead(behaviour, { 'Content-Type': 'text/plain' }).end(behaviour < 300 ? 'ok' : 'nope');
      received.push(rec);
      waiters = waiters.filter((w) => (received.length >= w.n ? (w.resolve(received[w.n - 1]!), false) : true));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return r;
}
