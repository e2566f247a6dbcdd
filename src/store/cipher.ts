/**
 * The cipher: encryption at rest for secret fields (app secrets, access and refresh tokens): AES-256-GCM, one random 96-bit IV
 * per value, additional authenticated data (AAD) binding each ciphertext to its record and field, and the key id
 * recorded in every ciphertext so master keys can rotate (docs/decisions/0002-postgres-store.md) while old ciphertexts stay readable.
 * Rationale and limits: docs/decisions/0001-encryption-at-rest.md.
 *
 * Ciphertext format (ASCII, safe in any text column):  dk1.<keyId>.<iv b64url>.<ciphertext||tag b64url>
 *
 * Where keys come from: DROPKEY_MASTER_KEY (keyringFromMasterKey, here) or the key file (./key-file.ts).
 *
 * Key material never leaves this module in readable form: no error message, log line, toJSON() or
 * util.inspect() output of a Keyring contains a key or a plaintext.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { DropkeyError, ErrorCodes } from '../errors.js';

const FORMAT = 'dk1';
export const KEY_BYTES = 32;
const IV_BYTES = 12; // NIST SP 800-38D §8.2.2: 96-bit random IVs
const TAG_BYTES = 16;
export const KEY_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const B64URL_RE = /^[A-Za-z0-9_-]*$/;

/** Where the active key came from; shown in messages so users know what to fix. */
export type KeySource = { kind: 'env' } | { kind: 'file'; path: string } | { kind: 'memory' };

/**
 * The AAD context of one secret field. JSON keeps it unambiguous whatever characters names contain, so a
 * ciphertext copied to another row or field fails authentication instead of decrypting.
 */
export function secretContext(table: string, name: string, field: string): string {
  return JSON.stringify([table, name, field]);
}

/**
 * A key id derived from the key itself (HMAC-SHA-256 keyed by the key, truncated). It reveals nothing usable about
 * a 256-bit random key, and it lets the same key carry the same id whether it comes from DROPKEY_MASTER_KEY or from
 * the key file, so a key exported from the file into the environment keeps decrypting.
 */
export function deriveKeyId(key: Buffer): string {
  return 'k' + createHmac('sha256', key).update('dropkey key id v1').digest('hex').slice(0, 16);
}

/**
 * How a keyring loaded from a key file notices that the file changed (./key-file.ts supplies it): `stamp` is cheap
 * and identifies a version of the file; `load` reads and parses it.
 */
export interface KeyFileWatch {
  stamp(): string | undefined;
  load(): Keyring;
}

export interface KeyEntry {
  id: string;
  key: Buffer;
  /** Epoch ms the key was created, when known. */
  created: number | null;
}

export class Keyring {
  readonly #keys: Map<string, KeyEntry>;
  #activeId: string;
  readonly source: KeySource;
  /** For a key-file keyring: how to re-read it, and what the file looked like when last read (see #followKeyFile). */
  readonly #watch: KeyFileWatch | undefined;
  #fileStamp: string | undefined;

  /** The first entry of `keys` is not special: `activeId` names the key new ciphertexts use. */
  constructor(keys: KeyEntry[], activeId: string, source: KeySource = { kind: 'memory' }, watch?: KeyFileWatch) {
    this.#keys = new Map();
    for (const k of keys) {
      if (k.key.length !== KEY_BYTES) throw keyError(`key "${k.id}" is not ${KEY_BYTES} bytes long`);
      if (!KEY_ID_RE.test(k.id)) throw keyError(`invalid key id "${k.id.slice(0, 80)}"`);
      if (this.#keys.has(k.id)) throw keyError(`duplicate key id "${k.id}"`);
      this.#keys.set(k.id, { id: k.id, key: Buffer.from(k.key), created: k.created });
    }
    if (!this.#keys.has(activeId)) throw keyError(`the active key id "${activeId}" is not among the keys`);
    this.#activeId = activeId;
    this.source = source;
    this.#watch = watch;
    this.#fileStamp = watch?.stamp();
  }

  /** A one-key keyring (e.g. from DROPKEY_MASTER_KEY). */
  static fromKey(key: Buffer, source: KeySource = { kind: 'memory' }): Keyring {
    const id = deriveKeyId(key);
    return new Keyring([{ id, key, created: null }], id, source);
  }

  /** A fresh random key, for tests and first use. */
  static generate(source: KeySource = { kind: 'memory' }): Keyring {
    return Keyring.fromKey(randomBytes(KEY_BYTES), source);
  }

  get activeKeyId(): string {
    return this.#activeId;
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  hasKey(id: string): boolean {
    return this.#keys.has(id);
  }

  /**
   * A keyring loaded from a key file follows changes to that file, so that `dropkey keys rotate` run elsewhere
   * (another process, another instance on the same data directory) does not leave a running `dropkey serve` unable
   * to read what the rotation wrote, or writing under a key about to be pruned. Keys are only ever added in memory,
   * never dropped, and a file that cannot be read or parsed right now is ignored (the keys already held stay).
   * Returns true when the file brought a change.
   */
  #followKeyFile(): boolean {
    if (this.#watch === undefined) return false;
    const stamp = this.#watch.stamp();
    if (stamp === undefined || stamp === this.#fileStamp) return false;
    this.#fileStamp = stamp;
    let fresh: Keyring;
    try {
      fresh = this.#watch.load();
    } catch {
      return false;
    }
    let changed = false;
    for (const id of fresh.keyIds) {
      if (!this.#keys.has(id)) {
        this.#keys.set(id, fresh.#keys.get(id)!);
        changed = true;
      }
    }
    if (fresh.#activeId !== this.#activeId) {
      this.#activeId = fresh.#activeId;
      changed = true;
    }
    return changed;
  }

  /** Encrypts `plaintext` under the active key, bound to `context` (see secretContext). */
  encrypt(plaintext: string, context: string): string {
    this.#followKeyFile();
    const entry = this.#keys.get(this.#activeId)!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', entry.key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(entry.id, context));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${FORMAT}.${entry.id}.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  /**
   * Decrypts a value written by encrypt() with the same context. An unknown key id, a malformed value or a failed
   * authentication (wrong key, tampered value, or a value moved from another record/field) → DROPKEY_KEY_ERROR.
   */
  decrypt(ciphertext: string, context: string): string {
    const parsed = parseCiphertext(ciphertext);
    const entry = this.#keys.get(parsed.keyId) ?? (this.#followKeyFile() ? this.#keys.get(parsed.keyId) : undefined);
    if (!entry) {
      throw new DropkeyError(
        ErrorCodes.KEY_ERROR,
        `a stored secret was encrypted with master key "${parsed.keyId}", which this dropkey does not have (${describeSource(this.source)} provides ${this.keyIds.map((k) => `"${k}"`).join(', ')})`,
        { hint: mismatchHint(this.source), details: { keyId: parsed.keyId, knownKeyIds: this.keyIds } },
      );
    }
    const body = parsed.body;
    if (body.length < TAG_BYTES) throw keyError('a stored secret is truncated (no authentication tag)', restoreHint());
    const decipher = createDecipheriv('aes-256-gcm', entry.key, parsed.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(entry.id, context));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch (cause) {
      // GCM only says "unable to authenticate"; the key id matched, so the value was altered or moved.
      throw new DropkeyError(
        ErrorCodes.KEY_ERROR,
        `a stored secret failed authentication under master key "${entry.id}": it was altered, copied from another record, or the key file was edited`,
        { cause, hint: restoreHint(), details: { keyId: entry.id } },
      );
    }
  }

  /** Whether a ciphertext was written under a key other than the active one (rotation still to do). */
  needsReencrypt(ciphertext: string): boolean {
    return parseCiphertext(ciphertext).keyId !== this.#activeId;
  }

  /** Re-encrypts a ciphertext under the active key; returns it unchanged if it already uses the active key. */
  reencrypt(ciphertext: string, context: string): string {
    if (!this.needsReencrypt(ciphertext)) return ciphertext;
    return this.encrypt(this.decrypt(ciphertext, context), context);
  }

  /** A new keyring with `key` (default: fresh random) added and made active; old keys stay readable. */
  withNewActiveKey(key: Buffer = randomBytes(KEY_BYTES), created: number = Date.now()): Keyring {
    const id = deriveKeyId(key);
    const entries = [...this.#keys.values()].filter((e) => e.id !== id);
    return new Keyring([...entries, { id, key, created }], id, this.source, this.#watch);
  }

  /** A new keyring without `id` (after every ciphertext moved to another key). The active key cannot be dropped. */
  withoutKey(id: string): Keyring {
    if (id === this.#activeId) throw keyError(`cannot remove the active key "${id}"`);
    return new Keyring([...this.#keys.values()].filter((e) => e.id !== id), this.#activeId, this.source, this.#watch);
  }

  /** The key file JSON (contains key material: only for the key file writers in ./key-file.ts). */
  serialize(): string {
    const file: KeyFileV1 = {
      version: 1,
      active: this.#activeId,
      keys: [...this.#keys.values()].map((e) => ({
        id: e.id,
        key: e.key.toString('base64'),
        created: new Date(e.created ?? Date.now()).toISOString(),
      })),
    };
    return JSON.stringify(file, null, 2) + '\n';
  }

  toJSON(): Record<string, unknown> {
    return { activeKeyId: this.#activeId, keyIds: this.keyIds, source: describeSource(this.source) };
  }

  [inspect.custom](): string {
    return `Keyring ${JSON.stringify(this.toJSON())}`;
  }
}

interface KeyFileV1 {
  version: 1;
  active: string;
  keys: { id: string; key: string; created: string }[];
}

function aad(keyId: string, context: string): Buffer {
  return Buffer.from(`${FORMAT}\0${keyId}\0${context}`, 'utf8');
}

export function parseCiphertext(value: string): { keyId: string; iv: Buffer; body: Buffer } {
  const parts = typeof value === 'string' ? value.split('.') : [];
  const [format, keyId, iv, body] = parts;
  if (
    parts.length !== 4 ||
    format !== FORMAT ||
    keyId === undefined ||
    !KEY_ID_RE.test(keyId) ||
    iv === undefined ||
    !B64URL_RE.test(iv) ||
    body === undefined ||
    !B64URL_RE.test(body)
  ) {
    throw keyError(`a stored secret is not in dropkey's "${FORMAT}" ciphertext format (the database was edited or is damaged)`, restoreHint());
  }
  const ivBuf = Buffer.from(iv, 'base64url');
  if (ivBuf.length !== IV_BYTES) throw keyError('a stored secret has a malformed IV', restoreHint());
  return { keyId, iv: ivBuf, body: Buffer.from(body, 'base64url') };
}

/** True when the string looks like one of our ciphertexts (used as a guard that no plaintext is written). */
export function isCiphertext(value: string): boolean {
  try {
    parseCiphertext(value);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Master key from DROPKEY_MASTER_KEY

const MASTER_KEY_HINT =
  'DROPKEY_MASTER_KEY must be 32 random bytes written as 64 hex digits or 44 base64 characters, e.g. the output of:\n' +
  '  node -e "console.log(require(\'crypto\').randomBytes(32).toString(\'base64\'))"\n' +
  'Several keys (during a rotation) are separated by commas, the active one first. Or unset it to use the key file in the data directory.';

/**
 * Parses the value of DROPKEY_MASTER_KEY: one key, or comma-separated keys with the active one first (so a rotation
 * can keep the previous key readable). Each key is 32 bytes as hex (64 digits) or base64/base64url (43-44 chars).
 * Anything else is refused: a short or mistyped key would silently weaken or lose every secret.
 * The error never repeats the value.
 */
export function keyringFromMasterKey(value: string): Keyring {
  const items = value.split(',').map((s) => s.trim());
  if (items.length === 0 || items.some((s) => s === '')) {
    throw keyError('DROPKEY_MASTER_KEY is empty or has an empty item', MASTER_KEY_HINT);
  }
  const keys = items.map((item, i) => {
    const key = decodeMasterKey(item);
    if (!key) {
      const what = items.length > 1 ? `item ${i + 1} of DROPKEY_MASTER_KEY` : 'DROPKEY_MASTER_KEY';
      throw keyError(`${what} is not a 32-byte key in hex or base64 (got ${item.length} characters)`, MASTER_KEY_HINT);
    }
    return key;
  });
  const entries = keys.map((key) => ({ id: deriveKeyId(key), key, created: null }));
  if (new Set(entries.map((e) => e.id)).size !== entries.length) {
    throw keyError('DROPKEY_MASTER_KEY lists the same key twice', MASTER_KEY_HINT);
  }
  return new Keyring(entries, entries[0]!.id, { kind: 'env' });
}

function decodeMasterKey(s: string): Buffer | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(s)) return Buffer.from(s, 'hex');
  // Standard or URL-safe base64, padded or not; re-encoding must give the same text back (no stray bits).
  if (/^[A-Za-z0-9+/]{43}=?$/.test(s) || /^[A-Za-z0-9_-]{43}$/.test(s)) {
    const buf = Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (buf.length !== KEY_BYTES) return undefined;
    const canonical = buf.toString('base64').replace(/=+$/, '');
    if (canonical !== s.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '')) return undefined;
    return buf;
  }
  return undefined;
}

function describeSource(source: KeySource): string {
  switch (source.kind) {
    case 'env':
      return 'DROPKEY_MASTER_KEY';
    case 'file':
      return `the key file ${source.path}`;
    case 'memory':
      return 'the given keyring';
  }
}

function mismatchHint(source: KeySource): string {
  switch (source.kind) {
    case 'env':
      return 'the master key does not match this store: set DROPKEY_MASTER_KEY to the key used when the secrets were stored (during a rotation list both keys, comma-separated, new first), or unset it if the store was created with its key file';
    case 'file':
      return `the master key does not match this store: set DROPKEY_MASTER_KEY to the key used when it was created, or restore ${source.path} from a backup`;
    case 'memory':
      return 'open the store with the keyring its secrets were written with';
  }
}

function restoreHint(): string {
  return 'restore the database or key file from a backup, or store the secret again (import the token, or log in again)';
}

export function keyError(message: string, hint?: string): DropkeyError {
  return new DropkeyError(ErrorCodes.KEY_ERROR, message, hint === undefined ? {} : { hint });
}

/** The key id of a ciphertext; undefined for values that are not ciphertexts (other meta rows). */
export function ciphertextKeyId(value: string): string | undefined {
  if (!value.startsWith(`${FORMAT}.`)) return undefined;
  try {
    return parseCiphertext(value).keyId;
  } catch {
    return undefined;
  }
}
