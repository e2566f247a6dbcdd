/**
 * Several real processes on one SQLite store: lock exclusivity, takeover of a SIGKILLed holder, a live holder kept
 * past its ttl by its heartbeat, and concurrent first-time migrations (plus key file creation).
 * The same file is the child program: run with `--child MODE ...` it registers no tests and acts as one process.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { sampleApp, sampleConnection } from '../contract.js';
import { openStore } from '../index.js';

const SELF = fileURLToPath(import.meta.url);
const childAt = process.argv.indexOf('--child');

if (childAt !== -1) {
  await child(process.argv.slice(childAt + 1));
} else {
  tests();
}

// ---- child side ------------------------------------------------------------------------------------------------

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Waits for "go" on stdin, so that every child starts its work at the same moment. */
async function barrier(): Promise<void> {
  say('ready');
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) if (line === 'go') break;
  rl.close();
}

async function child([mode, home, ...args]: string[]): Promise<void> {
  if (!home) throw new Error('child: no home');
  const warn = () => {};
  if (mode === 'migrate') {
    await barrier();
    const s = await openStore({ home, warn });
    await s.createApp(sampleApp(`app-${process.pid}`, { secret: `secret-of-${process.pid}` }));
    await s.close();
    say('done');
    return;
  }
  const s = await openStore({ home, warn });
  if (mode === 'counter') {
    const iterations = Number(args[0]);
    // A second, raw connection marks who is inside the critical section, to catch any overlap.
    const raw = new Database(join(home, 'dropkey.db'), { timeout: 5000 });
    const mark = raw.prepare("UPDATE meta SET value = ? WHERE key = 'test_holder' AND value = ''");
    const unmark = raw.prepare("UPDATE meta SET value = '' WHERE key = 'test_holder' AND value = ?");
    const overlap = raw.prepare("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'test_overlaps'");
    await barrier();
    for (let i = 0; i < iterations; i++) {
      await s.withLock('counter', { ttlMs: 5_000, waitMs: 60_000 }, async () => {
        const me = String(process.pid);
        if (mark.run(me).changes !== 1) overlap.run();
        // Read-modify-write through the store with a pause in between: without the lock, updates get lost.
        const c = await s.getConnection('default');
        await new Promise((r) => setTimeout(r, Math.random() < 0.3 ? 1 : 0));
        await s.updateConnection('default', { accessTokenExpiresAt: (c!.accessTokenExpiresAt ?? 0) + 1 });
        if (unmark.run(me).changes !== 1) overlap.run();
      });
    }
    raw.close();
    await s.close();
    say('done');
    return;
  }
  if (mode === 'hold') {
    // Takes the lock and holds it: forever (to be killed) or for a given time.
    const ttlMs = Number(args[0]);
    const holdMs = args[1] === undefined ? undefined : Number(args[1]);
    await s.withLock('k', { ttlMs, waitMs: 0 }, async (lease) => {
      say(`acquired ${Date.now()}`);
      if (holdMs === undefined) await new Promise(() => setInterval(() => {}, 1 << 30));
      await new Promise((r) => setTimeout(r, holdMs));
      say(`releasing ${Date.now()} lost=${lease.signal.aborted}`);
    });
    await s.close();
    return;
  }
  throw new Error(`child: unknown mode ${mode}`);
}

// ---- parent side -----------------------------------------------------------------------------------------------

interface Child {
  proc: ChildProcessWithoutNullStreams;
  lines: string[];
  waitFor(prefix: string): Promise<string>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(...args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', SELF, '--child', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: proc.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (line.startsWith(w.prefix)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      for (const w of waiters) w.resolve(`exited before "${w.prefix}": ${stderr}`);
      resolve({ code, signal });
    }),
  );
  return {
    proc,
    lines,
    exit,
    waitFor: (prefix) => {
      const seen = lines.find((l) => l.startsWith(prefix));
      return seen !== undefined ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ prefix, resolve }));
    },
    get stderr() {
      return stderr;
    },
  } as Child;
}

async function startTogether(n: number, ...args: string[]): Promise<Child[]> {
  const children = Array.from({ length: n }, () => start(...args));
  for (const c of children) assert.equal(await c.waitFor('ready'), 'ready', (c as unknown as { stderr: string }).stderr);
  for (const c of children) c.proc.stdin.write('go\n');
  return children;
}

async function expectClean(c: Child): Promise<void> {
  const { code, signal } = await c.exit;
  assert.equal(code, 0, `child failed (signal ${signal}): ${(c as unknown as { stderr: string }).stderr}`);
}

function tests(): void {
  const newHome = () => join(mkdtempSync(join(tmpdir(), 'dropkey-e2e-')), 'data');

  describe('SQLite store shared by several processes', () => {
    it('4 processes x 25 locked read-modify-writes: no lost update, never two inside', async () => {
      const home = newHome();
      try {
        const s = await openStore({ home, warn: () => {} });
        await s.createApp(sampleApp());
        await s.createConnection(sampleConnection('default', 'backup', { accessTokenExpiresAt: 0 }));
        const raw = new Database(join(home, 'dropkey.db'));
        raw.prepare("INSERT INTO meta (key, value) VALUES ('test_holder', ''), ('test_overlaps', '0')").run();
        const started = Date.now();
        const children = await startTogether(4, 'counter', home, '25');
        for (const c of children) await expectClean(c);
        const elapsed = Date.now() - started;
        assert.equal((await s.getConnection('default'))!.accessTokenExpiresAt, 100);
        assert.equal((raw.prepare("SELECT value FROM meta WHERE key = 'test_overlaps'").get() as { value: string }).value, '0');
        assert.equal((await s.getConnection('default'))!.version, 101);
        raw.close();
        await s.close();
        process.stdout.write(`# 100 locked sections over 4 processes in ${elapsed} ms\n`);
      } finally {
        rmSync(join(home, '..'), { recursive: true, force: true });
      }
    });

    it('a SIGKILLed holder blocks others only until its ttl runs out', async () => {
      const home = newHome();
      try {
        const s = await openStore({ home, warn: () => {} });
        const ttlMs = 1_500;
        const holder = start('hold', home, String(ttlMs));
        const acquiredAt = Number((await holder.waitFor('acquired')).split(' ')[1]);
        holder.proc.kill('SIGKILL');
        assert.equal((await holder.exit).signal, 'SIGKILL');
        // Still held right after the kill: nobody released it.
        await assert.rejects(s.withLock('k', { ttlMs, waitMs: 0 }, async () => {}), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.LOCK_TIMEOUT);
        const gotAt = await s.withLock('k', { ttlMs, waitMs: 10_000 }, async () => Date.now());
        const after = gotAt - acquiredAt;
        assert.ok(after >= ttlMs - 5, `taken over ${after} ms after acquisition, before the ${ttlMs} ms ttl`);
        assert.ok(after < ttlMs + 1_000, `taken over only after ${after} ms`);
        await s.close();
      } finally {
        rmSync(join(home, '..'), { recursive: true, force: true });
      }
    });

    it('a live holder keeps the lock past its ttl (heartbeat) and others get it when it releases', async () => {
      const home = newHome();
      try {
        const s = await openStore({ home, warn: () => {} });
        const holder = start('hold', home, '300', '1500');
        const acquiredAt = Number((await holder.waitFor('acquired')).split(' ')[1]);
        const gotAt = await s.withLock('k', { ttlMs: 300, waitMs: 10_000 }, async () => Date.now());
        const releasing = await holder.waitFor('releasing');
        const [, releasedAt, lost] = releasing.split(' ');
        assert.equal(lost, 'lost=false');
        assert.ok(gotAt >= Number(releasedAt), `got the lock at ${gotAt}, before the holder released at ${releasedAt}`);
        assert.ok(gotAt - acquiredAt >= 1_500);
        await expectClean(holder);
        await s.close();
      } finally {
        rmSync(join(home, '..'), { recursive: true, force: true });
      }
    });

    it('4 processes opening a fresh data directory at once: one key file, one migration, all succeed', async () => {
      const home = newHome();
      try {
        const children = await startTogether(4, 'migrate', home);
        for (const c of children) await expectClean(c);
        assert.deepEqual(readdirSync(home).filter((f) => !f.startsWith('dropkey.db')), ['master.key'], 'one key file, no temporary files');
        const s = await openStore({ home, warn: () => {} });
        const apps = await s.listApps();
        assert.equal(apps.length, 4);
        for (const a of apps) assert.equal(a.secret, `secret-of-${a.name.slice(4)}`);
        await s.close();
        const raw = new Database(join(home, 'dropkey.db'), { readonly: true });
        assert.deepEqual(raw.prepare('SELECT version FROM schema_migrations').all(), [{ version: 1 }]);
        raw.close();
      } finally {
        rmSync(join(home, '..'), { recursive: true, force: true });
      }
    });
  });
}
