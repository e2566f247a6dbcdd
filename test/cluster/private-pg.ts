/**
 * A throwaway PostgreSQL server for the restart test: initdb into a temporary directory, listening on 127.0.0.1
 * and a free port. Restarting it (pg_ctl restart -m fast, what pg_ctlcluster does underneath) disturbs nobody,
 * whereas restarting the shared server at DROPKEY_TEST_DATABASE_URL would break other test files running at the
 * same time. Runs as the `postgres` user when the tests run as root (PostgreSQL refuses to run as root).
 */
import { execFile, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Runs a PostgreSQL tool to its exit. Not execFile: pg_ctl's server child would inherit the output pipes and keep
 * them open, so "close" would never come; stdin is closed and only the exit status counts.
 */
function runTool(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${args[0] ?? cmd} exited with ${code}: ${err.slice(0, 500)}`))));
  });
}

export interface PrivatePostgres {
  url: string;
  /** pg_ctl restart -m fast: every client connection is cut, the server is back when it resolves. */
  restart(): Promise<void>;
  /** Stops the server (fast shutdown) until up(). */
  down(): Promise<void>;
  up(): Promise<void>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

function binDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin');
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** The private server, or the reason it cannot run here. */
export async function startPrivatePostgres(): Promise<PrivatePostgres | { skip: string }> {
  const bin = binDir();
  if (!bin) return { skip: 'no PostgreSQL server binaries under /usr/lib/postgresql (install postgresql to run the restart test)' };
  const asRoot = process.getuid?.() === 0;
  let uid = -1;
  let gid = -1;
  if (asRoot) {
    try {
      uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
      gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    } catch {
      return { skip: 'running as root and there is no postgres user to run a private PostgreSQL server' };
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-pg-'));
  if (asRoot) chownSync(dir, uid, gid);
  const data = join(dir, 'data');
  const pg = (tool: string, args: string[]) => (asRoot ? runTool('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]) : runTool(join(bin, tool), args));
  const port = await freePort();
  try {
    await pg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
    await pg('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`, 'start']);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    return { skip: `could not start a private PostgreSQL server: ${(err as Error).message.split('\n')[0]}` };
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async restart() {
      await pg('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'restart']);
    },
    async down() {
      await pg('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
    },
    async up() {
      await pg('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`, 'start']);
    },
    async stop() {
      await pg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
