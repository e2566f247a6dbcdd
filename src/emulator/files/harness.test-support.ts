/**
 * Test support for the files module: calls route handlers with a RouteContext shaped like the core's, so unit
 * tests exercise argument decoding, the model and error unions without HTTP. Not used by the emulator itself.
 */
import { type Caller, type RouteContext, type RouteResult, RouteError } from '../route-module.js';
import { createFilesModule, type FilesModule } from './index.js';

export const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);

export interface CallOptions {
  body?: Uint8Array | Uint8Array[];
  /** Declared Content-Length; defaults to the body's length. */
  contentLength?: number;
  /** Send no Content-Length at all (a chunked body). */
  noLength?: boolean;
  root?: Caller['root'];
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export class Harness {
  clock = T0;
  readonly module: FilesModule;
  readonly root: NonNullable<Caller['root']> = { namespaceId: '1001' };

  constructor(dataDir?: string) {
    this.module = createFilesModule({ ...(dataDir === undefined ? {} : { dataDir }), now: () => this.clock });
  }

  route(name: string) {
    const r = this.module.routes.find((x) => x.name === name);
    if (!r) throw new Error(`no route ${name}`);
    return r;
  }

  async raw(name: string, arg: unknown, opts: CallOptions = {}): Promise<RouteResult> {
    const route = this.route(name);
    const chunks = opts.body === undefined ? undefined : Array.isArray(opts.body) ? opts.body : [opts.body];
    const length = chunks?.reduce((n, c) => n + c.length, 0);
    const body =
      chunks === undefined
        ? null
        : new ReadableStream<Uint8Array>({
            start(c) {
              for (const chunk of chunks) c.enqueue(chunk);
              c.close();
            },
          });
    const headers = new Headers(opts.headers ?? (route.style === 'rpc' ? {} : { 'dropbox-api-arg': JSON.stringify(arg) }));
    const ctx: RouteContext = {
      route: name,
      arg,
      body: route.style === 'upload' ? (body ?? new ReadableStream({ start: (c) => c.close() })) : null,
      contentLength: opts.noLength ? undefined : (opts.contentLength ?? (route.style === 'upload' ? (length ?? 0) : undefined)),
      headers,
      caller: { kind: 'user', accountId: 'dbid:test', scopes: [], root: opts.root ?? this.root },
      now: () => this.clock,
      signal: opts.signal ?? new AbortController().signal,
    };
    return route.handler(ctx);
  }

  /** Calls a JSON route and returns its value. */
  async call(name: string, arg: unknown, opts: CallOptions = {}): Promise<any> {
    const r = await this.raw(name, arg, opts);
    if (r.kind !== 'json') throw new Error(`${name} returned a download`);
    return r.value;
  }

  /** Calls a route that must fail with a RouteError; returns its Stone error. */
  async fail(name: string, arg: unknown, opts: CallOptions = {}): Promise<any> {
    try {
      await this.raw(name, arg, opts);
    } catch (e) {
      if (e instanceof RouteError) return e.error;
      throw e;
    }
    throw new Error(`${name} succeeded; expected a route error`);
  }

  async upload(path: string, data: string | Uint8Array, extra: Record<string, unknown> = {}, opts: CallOptions = {}) {
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    return this.call('files/upload', { path, ...extra }, { ...opts, body });
  }

  async download(path: string, opts: CallOptions = {}, range?: [number, number]) {
    const r = await this.raw('files/download', { path }, opts);
    if (r.kind !== 'download') throw new Error('not a download');
    const [start, end] = range ?? [0, r.size - 1];
    const bytes = r.size === 0 ? Buffer.alloc(0) : Buffer.from(await new Response(r.open(start, end)).arrayBuffer());
    return { result: r.result as any, size: r.size, bytes, etag: r.etag };
  }
}
