/**
 * For clients that only speak https to Dropbox's own host names (rclone's Go SDK builds
 * `https://api.dropboxapi.com/2/...` and has no option for another host; the Python SDK takes other hosts but
 * always https): a TLS front on 127.0.0.1 with a throw-away CA, passing every request on to the plain-http emulator.
 *   - `hostPort` (127.0.0.1:PORT) for clients that take a host (the Python SDK's DROPBOX_API_HOST...);
 *   - `proxyUrl`, an HTTP proxy whose CONNECT tunnels to Dropbox's hosts end in that TLS front, for clients that
 *     take only a proxy (HTTPS_PROXY). Any other CONNECT target is refused, so nothing leaves the machine.
 * The client trusts `caFile` (rclone --ca-cert, the SDK's ca_certs). Needs the openssl command.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DROPBOX_HOSTS = ['api.dropboxapi.com', 'content.dropboxapi.com', 'notify.dropboxapi.com'];

export function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface TlsFront {
  caFile: string;
  hostPort: string;
  proxyUrl: string;
  /** Requests seen, as "HOST PATH" (to show which host each call went to). */
  seen: string[];
  close(): Promise<void>;
}

function makeCerts(dir: string): { key: Buffer; cert: Buffer; caFile: string } {
  const run = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=dropkey test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=api.dropboxapi.com']);
  writeFileSync(join(dir, 'leaf.ext'), `subjectAltName=${DROPBOX_HOSTS.map((h) => `DNS:${h}`).join(',')},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n`);
  run(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '1', '-extfile', 'leaf.ext']);
  return { key: readFileSync(join(dir, 'leaf.key')), cert: readFileSync(join(dir, 'leaf.pem')), caFile: join(dir, 'ca.pem') };
}

export async function startTlsFront(upstream: string): Promise<TlsFront> {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-tls-front-'));
  const { key, cert, caFile } = makeCerts(dir);
  const up = new URL(upstream);
  const seen: string[] = [];
  const forward = (req: IncomingMessage, res: ServerResponse): void => {
    seen.push(`${req.headers.host ?? ''} ${req.url ?? ''}`);
    const out = httpRequest(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  };
  const tls = createHttpsServer({ key, cert }, forward);
  const proxy = createHttpServer((_req, res) => res.writeHead(405).end());
  const sockets = new Set<Socket>();
  proxy.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const [host, port] = (req.url ?? '').split(':');
    if (!DROPBOX_HOSTS.includes(host ?? '') || port !== '443') {
      socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) socket.unshift(head);
    tls.emit('connection', socket);
  });
  await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    caFile,
    hostPort: `127.0.0.1:${(tls.address() as AddressInfo).port}`,
    proxyUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    seen,
    async close() {
      for (const s of sockets) s.destroy();
      tls.closeAllConnections();
      proxy.closeAllConnections();
      await Promise.all([new Promise((r) => tls.close(r)), new Promise((r) => proxy.close(r))]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
