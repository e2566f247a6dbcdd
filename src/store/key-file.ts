/**
 * The key file (home/master.key): the master keys when DROPKEY_MASTER_KEY is not set. Created atomically on first
 * use, never replaced while it may still be needed (every stored secret would become unreadable), replaced
 * atomically by a key rotation, and followed by running processes when another process rotates it (KeyFileWatch).
 * The cipher itself and the ciphertext format are ./cipher.ts's.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import { dirname } from 'node:path';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { deriveKeyId, KEY_BYTES, KEY_ID_RE, Keyring, type KeyEntry, type KeyFileWatch } from './cipher.js';


export interface KeyFileOptions {
  /** Receives warnings (loose permissions). Default: process.emitWarning. */
  warn?: (message: string) => void;
  /** When false, a missing key file is an error instead of being created (the store already holds secrets). */
  create?: boolean;
}

/**
 * Loads the key file at `path`, creating it with a fresh key on first use.
 *
 * Creation is atomic and never replaces anything: the JSON is written and fsynced to a private temporary file,
 * then hard-linked to `path`, which fails if `path` exists (same guarantee as O_EXCL, and no other process can ever
 * read a half-written key file). If linking is not supported, it falls back to open(O_CREAT|O_EXCL).
 * A key file that exists but cannot be parsed is refused and left untouched: replacing it would make every stored
 * secret unreadable.
 */
export function loadOrCreateKeyFile(path: string, options: KeyFileOptions = {}): Keyring {
  const warn = options.warn ?? ((m: string) => process.emitWarning(m, 'DropkeyWarning'));
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  warnIfLoose(dir, warn);

  let created = false;
  if (options.create !== false) created = createKeyFileExclusive(path);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DropkeyError(ErrorCodes.KEY_ERROR, `the master key file ${path} is missing, but the store already holds encrypted secrets`, {
        hint: `restore ${path} from a backup, or set DROPKEY_MASTER_KEY to the key the store was created with`,
      });
    }
    throw new DropkeyError(ErrorCodes.KEY_ERROR, `cannot read the master key file ${path}: ${(cause as Error).message}`, {
      cause,
      hint: `check the file's owner and permissions (it should be readable by you only: chmod 600 ${path})`,
    });
  }
  if (!created) {
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077) warn(`the master key file ${path} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
  }
  return parseKeyFile(text, path);
}

/** Parses key file text; a wrong format is refused with a message that never echoes key material. */
export function parseKeyFile(text: string, path: string): Keyring {
  const refuse = (what: string) =>
    new DropkeyError(ErrorCodes.KEY_ERROR, `the master key file ${path} is not usable: ${what}`, {
      hint:
        `dropkey will not replace it, because that would make every stored secret unreadable. ` +
        `Restore ${path} from a backup, or set DROPKEY_MASTER_KEY to the key it held. ` +
        `If you are sure nothing was ever stored with it, move it away and dropkey will create a new one.`,
      details: { path },
    });
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw refuse(text.trim() === '' ? 'it is empty' : 'it is not JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw refuse('it is not a JSON object');
  const obj = data as Record<string, unknown>;
  if (obj['version'] !== 1) {
    throw refuse(
      typeof obj['version'] === 'number' ? `it has format version ${obj['version']}, which this dropkey does not know (upgrade dropkey)` : 'it has no format version',
    );
  }
  if (!Array.isArray(obj['keys']) || obj['keys'].length === 0) throw refuse('it lists no keys');
  const entries: KeyEntry[] = [];
  for (const [i, k] of (obj['keys'] as unknown[]).entries()) {
    if (typeof k !== 'object' || k === null) throw refuse(`key #${i + 1} is not an object`);
    const { id, key, created } = k as Record<string, unknown>;
    if (typeof id !== 'string' || !KEY_ID_RE.test(id)) throw refuse(`key #${i + 1} has no valid id`);
    if (typeof key !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(key)) throw refuse(`key "${id}" is not 32 bytes of base64`);
    const buf = Buffer.from(key, 'base64');
    if (buf.length !== KEY_BYTES) throw refuse(`key "${id}" is not 32 bytes long`);
    if (entries.some((e) => e.id === id)) throw refuse(`key id "${id}" appears twice`);
    const createdMs = typeof created === 'string' ? Date.parse(created) : typeof created === 'number' ? created : NaN;
    entries.push({ id, key: buf, created: Number.isFinite(createdMs) ? createdMs : null });
  }
  const active = obj['active'];
  if (typeof active !== 'string' || !entries.some((e) => e.id === active)) throw refuse('its "active" key id is not among its keys');
  return new Keyring(entries, active, { kind: 'file', path }, fileWatch(path));
}

/** Returns true if this call created the file, false if it already existed. */
function createKeyFileExclusive(path: string): boolean {
  const key = randomBytes(KEY_BYTES);
  const id = deriveKeyId(key);
  const text = new Keyring([{ id, key, created: Date.now() }], id).serialize();
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writePrivateFile(tmp, text, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY);
  try {
    linkSync(tmp, path);
    fsyncDir(dirname(path));
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw keyFileWriteError(path, err);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
  }
  // No hard links on this file system: O_EXCL still guarantees we never replace an existing key file.
  try {
    writePrivateFile(path, text, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY);
    fsyncDir(dirname(path));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw keyFileWriteError(path, err);
  }
}

function writePrivateFile(path: string, text: string, flags: number): void {
  const fd = openSync(path, flags, 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* not supported on every platform; the file itself is already synced */
  }
}

function keyFileWriteError(path: string, cause: unknown): DropkeyError {
  return new DropkeyError(ErrorCodes.KEY_ERROR, `cannot create the master key file ${path}: ${(cause as Error).message}`, {
    cause,
    hint: 'check that the data directory is writable by you (set DROPKEY_HOME to choose another one), or set DROPKEY_MASTER_KEY',
  });
}

/** Warns when a directory holding secrets can be written by others (they could swap the key file or database). */
export function warnIfLoose(dir: string, warn: (message: string) => void): void {
  try {
    const mode = statSync(dir).mode & 0o777;
    if (process.platform !== 'win32' && mode & 0o022) {
      warn(`the dropkey data directory ${dir} is writable by other users (mode ${mode.toString(8)}); run: chmod 700 ${dir}`);
    }
  } catch {
    /* reported by whoever uses the directory next */
  }
}

/** A key-file keyring re-reads its file when the file changed (a rotation run by another process). */
function fileWatch(path: string): KeyFileWatch {
  return { stamp: () => fileStamp(path), load: () => parseKeyFile(readFileSync(path, 'utf8'), path) };
}

/** Identifies a version of a file cheaply (key files are replaced by rename, so the inode changes too). */
function fileStamp(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return undefined;
  }
}


/**
 * Replaces the key file with `keyring` atomically: the new text is written and fsynced to a private temporary
 * file beside it, then renamed over it (readers see the old file or the new one, never a mix), then the
 * directory is fsynced. Callers only ever pass keyrings that still hold every key the old file had, until the
 * rotation proved a key unused.
 */
export function replaceKeyFile(path: string, keyring: Keyring): void {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  // The temporary file holds every master key: it must not stay behind when a step fails (disk full, EIO).
  const discardTmp = () => {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
  };
  const fd = openSync(tmp, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600);
  try {
    writeSync(fd, keyring.serialize());
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    discardTmp();
    throw new DropkeyError(ErrorCodes.KEY_ERROR, `cannot write the new master key file beside ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, {
      cause: err,
      hint: 'the old key file is unchanged; free some disk space or fix the directory, then run the command again',
    });
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    discardTmp();
    throw new DropkeyError(ErrorCodes.KEY_ERROR, `cannot replace the master key file ${path}: ${(err as Error).message}`, {
      cause: err,
      hint: 'the old key file is unchanged; check that its directory is writable by you',
    });
  }
  try {
    const dfd = openSync(dirname(path), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    /* not supported everywhere; the file itself is synced */
  }
}
