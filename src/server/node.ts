/**
 * The Node listener: a thin adapter from node:http to the app's fetch (@hono/node-server's request listener),
 * with graceful shutdown: stop accepting, let in-flight requests finish (bounded), then drop what is left.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { DropkeyError, ErrorCodes } from '../errors.js';
import type { ServerApp } from './app.js';

function listenError(err: NodeJS.ErrnoException, port: number, host: string): Error {
  const where = `${host}:${port}`;
  if (err.code === 'EADDRINUSE') {
    return new DropkeyError(ErrorCodes.BAD_INPUT, `Port ${port} is already in use on ${host}.`, { cause: err, hint: 'Stop the other server, or pick another port with --port N (0 picks a free one).' });
  }
  if (err.code === 'EACCES') {
    return new DropkeyError(ErrorCodes.BAD_INPUT, `Not allowed to listen on ${where}.`, { cause: err, hint: 'Ports below 1024 need privileges: use --port 8080 behind a reverse proxy.' });
  }
  if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') {
    return new DropkeyError(ErrorCodes.BAD_INPUT, `${host} is not an address of this machine.`, { cause: err, hint: 'Use --host 127.0.0.1 (default), or 0.0.0.0 for every interface.' });
  }
  return err;
}

export interface Listener {
  server: Server;
  host: string;
  port: number;
  /** Closes gracefully: no new connections; waits up to graceMs for in-flight requests. */
  close(graceMs?: number): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface BindOptions {
  /**
   * A request body during which the client sends nothing for this long is cut with a 408 (default 60 s; 0: never).
   * An idle bound, not a total one: an upload that keeps moving may take as long as it needs.
   */
  bodyIdleTimeoutMs?: number;
}

export const DEFAULT_BODY_IDLE_TIMEOUT_MS = 60_000;

const TIMEOUT_BODY = JSON.stringify({
  error: { code: 'DROPKEY_REQUEST_TIMEOUT', message: 'The request body stopped arriving, so the request was dropped.', hint: 'Send the body without long pauses, then try again.' },
});

/**
 * Cuts a request whose body stops arriving. Progress is read from the socket's byte count (node:http feeds the
 * parser below JavaScript, so there are no 'data' events to watch), once per idle period: a body is cut after one
 * to two idle periods of silence. Data the app has not read yet (its own backpressure, e.g. Dropbox slow to take an
 * upload) is never the client's idleness.
 */
function watchBody(req: IncomingMessage, res: ServerResponse, idleMs: number): void {
  const length = req.headers['content-length'];
  const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
  if (idleMs <= 0 || !hasBody || req.complete) return;
  const socket = req.socket;
  let seen = socket.bytesRead;
  const stop = (): void => clearTimeout(timer);
  const timer = setTimeout(() => {
    if (req.complete || res.writableEnded) return;
    const now = socket.bytesRead;
    if (now !== seen || req.readableLength > 0 || req.isPaused()) {
      seen = now;
      timer.refresh();
      return;
    }
    if (!res.headersSent) {
      socket.end(
        `HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n` +
          `Content-Length: ${Buffer.byteLength(TIMEOUT_BODY)}\r\n\r\n${TIMEOUT_BODY}`,
      );
    }
    socket.destroySoon();
  }, idleMs);
  req.once('end', stop);
  res.once('close', stop);
}

/**
 * Binds first and attaches the app later (setApp), because the public URL, which the app needs, may depend on
 * the port the OS chose (--port 0). Until then, requests get 503.
 */
export async function bind(port: number, host: string, options: BindOptions = {}): Promise<Listener & { setApp(app: ServerApp): void }> {
  const bodyIdleMs = options.bodyIdleTimeoutMs ?? DEFAULT_BODY_IDLE_TIMEOUT_MS;
  let handler: Handler = (_req, res) => {
    res.writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '1' });
    res.end(JSON.stringify({ error: { code: 'DROPKEY_STORE', message: 'The server is starting.' } }));
  };
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const server = createServer((req, res) => {
    inFlight++;
    res.once('close', () => {
      inFlight--;
      if (inFlight === 0) drained?.();
    });
    watchBody(req, res, bodyIdleMs);
    handler(req, res);
  });
  // Keep-alive longer than typical load balancers' idle timeouts (60 s) avoids races on reused sockets.
  server.keepAliveTimeout = 65_000;
  // Node's default requestTimeout (300 s for a whole request) would cut proxied uploads that take longer, e.g.
  // 150 MiB on a slow link. Slow headers stay bounded by headersTimeout (60 s), which is kept; slow bodies by
  // watchBody's idle timeout between chunks.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException) => reject(listenError(err, port, host));
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    server,
    host,
    port: addr.port,
    setApp(app: ServerApp) {
      const listener = getRequestListener(app.fetch as (req: Request, env: unknown) => Response | Promise<Response>) as unknown as Handler;
      const fast = app.fastPath;
      handler = fast ? (req, res) => void (fast(req, res) || listener(req, res)) : listener;
    },
    close(graceMs = 10_000) {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive sockets would hold close() open; busy ones finish their response first.
        server.closeIdleConnections();
        const waitDrain = inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => (drained = r));
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        timer.unref();
        void waitDrain.then(() => {
          server.closeIdleConnections();
        });
      });
      return closing;
    },
  };
}
