/**
 * The Node listener: a thin adapter from node:http(s) to the emulator's `Request → Response` handler. Bodies
 * stream both ways (uploads reach the files module as a ReadableStream, downloads are piped out with
 * backpressure), so memory stays bounded whatever the file size.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { ResetConnection } from './faults.js';

export type Handler = (req: Request) => Promise<Response>;

export interface Listening {
  server: Server;
  url: string;
}

export async function listen(
  handler: Handler,
  opts: { port: number; host: string; tls?: { cert: string | Buffer; key: string | Buffer } },
  onError: (err: unknown) => void,
): Promise<Listening> {
  const scheme = opts.tls ? 'https' : 'http';
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    serve(handler, scheme, req, res).catch((err: unknown) => {
      onError(err);
      if (!res.headersSent) {
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Internal Server Error');
      } else res.destroy();
    });
  };
  const server: Server = opts.tls
    ? (createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, listener) as unknown as Server)
    : createHttpServer(listener);
  // Uploads of 150 MiB on a slow link must not be cut off by Node's 5-minute default.
  server.requestTimeout = 0;
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' || opts.host.includes(':') ? `[${addr.address}]` : opts.host;
  return { server, url: `${scheme}://${host}:${addr.port}` };
}

async function serve(handler: Handler, scheme: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let url: URL;
  const headers = new Headers();
  try {
    url = new URL(req.url ?? '/', `${scheme}://${req.headers.host ?? 'localhost'}`);
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  } catch {
    res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Bad request: malformed URL or headers');
    return;
  }
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  // A handler may answer before reading the whole upload: discard the rest so the connection stays usable.
  res.on('finish', () => {
    if (!req.complete) {
      req.removeAllListeners('data');
      req.resume();
    }
  });
  const method = req.method ?? 'GET';
  const hasBody = method !== 'GET' && method !== 'HEAD';
  const init: RequestInit & { duplex?: 'half' } = { method, headers, signal: controller.signal };
  if (hasBody) {
    init.body = bodyStream(req, controller);
    init.duplex = 'half';
  }
  let response: Response;
  try {
    response = await handler(new Request(url, init));
  } catch (err) {
    if (err instanceof ResetConnection) {
      req.socket.destroy();
      return;
    }
    throw err;
  }
  const out: Record<string, string> = {};
  response.headers.forEach((v, k) => {
    out[k] = v;
  });
  res.writeHead(response.status, out);
  if (!response.body || method === 'HEAD') {
    await response.body?.cancel().catch(() => {});
    res.end();
    return;
  }
  const body = Readable.fromWeb(response.body as unknown as import('node:stream/web').ReadableStream);
  body.on('error', () => res.destroy());
  // A client that hangs up mid-download: pipe() would only unpipe and leave the source paused, holding its file
  // handle; destroying it cancels the response stream down to the blob's read stream.
  res.on('close', () => {
    if (!res.writableFinished) body.destroy();
  });
  body.pipe(res);
}

/**
 * The request body as a web stream with backpressure (about 1 MiB buffered at most). Cancelling it discards the
 * rest of the upload instead of destroying the socket, so an early error answer still reaches the client.
 */
function bodyStream(req: IncomingMessage, abort: AbortController): ReadableStream<Uint8Array> {
  let finished = false;
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        req.on('data', (chunk: Buffer) => {
          if (finished) return;
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((controller.desiredSize ?? 0) <= 0) req.pause();
        });
        req.on('end', () => {
          if (finished) return;
          finished = true;
          controller.close();
        });
        const fail = (err: unknown) => {
          if (finished) return;
          finished = true;
          // The request's signal is aborted before the read fails, so the handler can tell a client that hung
          // up from a bug of its own.
          abort.abort(err);
          controller.error(err);
        };
        req.on('error', fail);
        req.on('close', () => {
          if (!req.complete) fail(new Error('the client aborted the request'));
        });
        req.pause();
      },
      pull() {
        req.resume();
      },
      cancel() {
        finished = true;
        req.removeAllListeners('data');
        req.resume();
      },
    },
    { highWaterMark: 1024 * 1024, size: (chunk) => chunk.byteLength },
  );
}
