/**
 * The atomic writer. A reader of an output sees the previous complete file or the new complete file, never a
 * part, whatever happens to the agent (kill -9, power loss after the rename is durable):
 *   1. the current file is read (the renderer keeps what it does not own) and its mode noted;
 *   2. the new text goes to a temporary file in the same directory (a rename across file systems is not atomic),
 *      created exclusively with 0600, then given the final mode (umask does not apply to fchmod), then fsync'd;
 *   3. the current file is read again: if someone edited it meanwhile, the render starts over from their version;
 *   4. rename over the output, then fsync the directory so the rename itself survives a crash.
 * A symlinked output (dotfiles managers link rclone.conf) is written through: the link's target is replaced, not
 * the link.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, readdir, readFile, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export const DEFAULT_FILE_MODE = 0o600;

export interface WriteOptions {
  /** The mode to give the file; null keeps the existing file's mode (0600 for a new file). */
  mode: number | null;
  /** Write even when the rendered text equals the file's (at start, so every output is known to be ours). */
  force: boolean;
}

export interface WriteResult {
  /** False when the file already held exactly this text (and mode), so nothing was written. */
  written: boolean;
  /** The file actually written (the target of a symlink). */
  path: string;
  mode: number;
}

/** Temporary files are named after their output and the writing process, so a later start can tell stale ones. */
function tempPrefix(path: string): string {
  return `.${basename(path)}.dropkey-`;
}

async function resolveTarget(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return path;
    throw err;
  }
}

interface Current {
  text: string | null;
  mode: number | null;
  uid: number | null;
  gid: number | null;
}

async function readCurrent(path: string): Promise<Current> {
  try {
    const [text, s] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    return { text, mode: s.mode & 0o7777, uid: s.uid, gid: s.gid };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { text: null, mode: null, uid: null, gid: null };
    throw err;
  }
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    // Some file systems refuse fsync on a directory (EINVAL) or opening one (EISDIR on a few platforms): the
    // rename is still atomic there, only its durability across a power loss is up to the file system.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw err;
  } finally {
    await fh?.close();
  }
}

/**
 * Renders and writes one file atomically. `render` gets the file's current text (null when missing) and may throw
 * (a damaged or foreign file): then nothing is written.
 */
export async function writeAtomic(path: string, render: (previous: string | null) => string, options: WriteOptions): Promise<WriteResult> {
  const target = await resolveTarget(path);
  const dir = dirname(target);
  for (let attempt = 1; ; attempt++) {
    const cur = await readCurrent(target);
    const next = render(cur.text);
    const mode = options.mode ?? cur.mode ?? DEFAULT_FILE_MODE;
    if (!options.force && cur.text === next && cur.mode === mode) return { written: false, path: target, mode };
    const tmp = join(dir, `${tempPrefix(target)}${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
    const fh = await open(tmp, 'wx', 0o600);
    let renamed = false;
    try {
      try {
        await fh.writeFile(next, 'utf8');
        await fh.chmod(mode);
        // Run as root for another user's file (a sidecar writing into an app's volume): keep its owner.
        if (process.getuid?.() === 0 && cur.uid !== null && cur.gid !== null) await fh.chown(cur.uid, cur.gid);
        await fh.sync();
      } finally {
        await fh.close();
      }
      // Edited meanwhile (between our read and now): render again from their version, so their edit survives.
      if ((await readText(target)) !== cur.text && attempt < 5) continue;
      await rename(tmp, target);
      renamed = true;
    } finally {
      if (!renamed) await unlink(tmp).catch(() => undefined);
    }
    await fsyncDir(dir);
    return { written: true, path: target, mode };
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes temporary files a killed agent left beside an output (kill -9 between create and rename). Only files
 * with our naming pattern whose writing process is gone are touched.
 */
export async function removeStaleTemps(path: string): Promise<number> {
  const target = await resolveTarget(path);
  const dir = dirname(target);
  const prefix = tempPrefix(target);
  let removed = 0;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const m = /^(\d+)-[0-9a-f]+\.tmp$/.exec(n.slice(prefix.length));
    if (!m || alive(Number(m[1]))) continue;
    await unlink(join(dir, n)).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}
