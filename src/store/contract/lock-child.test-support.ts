/**
 * The child program of the multi-process lock contract (./locks.test-support.ts): one process opening the store the
 * way every dropkey process does (openStores: the data directory's key file, the database URL).
 *   node --import tsx lock-child.test-support.ts MODE HOME DATABASE_URL|- [ARGS...]
 * It talks on stdout: `ready` (then waits for `go` on stdin), `acquired <ms>`, `releasing <ms> lost=<bool>`, `done`.
 */
import { appendFileSync, closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { openStores } from '../index.js';
import { sampleApp } from './core.test-support.js';

const [mode, home, url, ...args] = process.argv.slice(2);
if (!mode || !home || !url) throw new Error('usage: lock-child MODE HOME DATABASE_URL|- [ARGS...]');
const databaseUrl = url === '-' ? undefined : url;

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

const open = () => openStores({ home, databaseUrl, warn: () => {} });

if (mode === 'migrate') {
  await barrier();
  const s = await open();
  await s.core.createApp(sampleApp(`app-${process.pid}`, { secret: `secret-of-${process.pid}` }));
  await s.close();
  say('done');
} else if (mode === 'counter') {
  const s = await open();
  const iterations = Number(args[0]);
  // A marker file beside the database says who is inside the critical section (created exclusively: a second
  // process inside finds it there); any overlap is counted in another file.
  const inside = join(home, 'test-inside');
  const overlap = () => appendFileSync(join(home, 'test-overlaps'), 'x');
  const me = String(process.pid);
  await barrier();
  for (let i = 0; i < iterations; i++) {
    await s.locks.withLock('counter', { ttlMs: 5_000, waitMs: 60_000 }, async () => {
      try {
        const fd = openSync(inside, 'wx');
        writeSync(fd, me);
        closeSync(fd);
      } catch {
        overlap();
      }
      // Read-modify-write through the store with a pause in between: without the lock, updates get lost.
      const c = await s.core.getConnection('default');
      await new Promise((r) => setTimeout(r, Math.random() < 0.3 ? 1 : 0));
      await s.core.updateConnection('default', { accessTokenExpiresAt: (c!.accessTokenExpiresAt ?? 0) + 1 });
      let holder = '';
      try {
        holder = readFileSync(inside, 'utf8');
      } catch {
        /* gone: someone else removed it */
      }
      if (holder === me) unlinkSync(inside);
      else overlap();
    });
  }
  await s.close();
  say('done');
} else if (mode === 'hold') {
  // Takes the lock and holds it: forever (to be killed) or for a given time.
  const s = await open();
  const ttlMs = Number(args[0]);
  const holdMs = args[1] === undefined ? undefined : Number(args[1]);
  await s.locks.withLock('k', { ttlMs, waitMs: 0 }, async (lease) => {
    say(`acquired ${Date.now()}`);
    if (holdMs === undefined) await new Promise(() => setInterval(() => {}, 1 << 30));
    await new Promise((r) => setTimeout(r, holdMs));
    say(`releasing ${Date.now()} lost=${lease.signal.aborted}`);
  });
  await s.close();
} else {
  throw new Error(`child: unknown mode ${mode}`);
}
