/**
 * The agent's health signal for an orchestrator: a status file, present (and rewritten) while every output holds a
 * token that has not expired and removed when one does not, and/or a loopback HTTP endpoint answering 200 or 503
 * with the same JSON. Loopback only: it says which files exist and when tokens expire, nothing for other machines.
 */
import { unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeAtomic } from './writer.js';

export interface OutputHealth {
  path: string;
  connection: string;
  format: string;
  /** When this agent last wrote it (ISO), or null. */
  written_at: string | null;
  /** The expiry of the token in the file (ISO), or null when unknown or never written. */
  expires_at: string | null;
  ok: boolean;
  /** The current problem, in words (never a secret). */
  problem: string | null;
}

export interface HealthStatus {
  ok: boolean;
  checked_at: string;
  outputs: OutputHealth[];
}

export class HealthEndpoint {
  #server: Server | null = null;

  constructor(private readonly status: () => HealthStatus) {}

  async listen(host: string, port: number): Promise<{ url: string }> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD' }).end();
        return;
      }
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/healthz' && path !== '/') {
        res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"error":"not found: try /healthz"}\n');
        return;
      }
      const s = this.status();
      res.writeHead(s.ok ? 200 : 503, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : `${JSON.stringify(s)}\n`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    const a = server.address() as AddressInfo;
    return { url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/healthz` };
  }

  async close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/**
 * Keeps the health file: rewritten (atomically) with the status while every output is fine, so its mtime is the
 * last good pass; removed when an output is not, so `test -f FILE` is a probe.
 */
export async function updateHealthFile(path: string, status: HealthStatus): Promise<void> {
  if (status.ok) await writeAtomic(path, () => `${JSON.stringify(status, null, 2)}\n`, { mode: 0o644, force: true });
  else {
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
}
