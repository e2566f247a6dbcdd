/**
 * `dropkey keys status|rotate|generate`: master key rotation (docs/decisions/0003-key-rotation.md). The procedure, and why the new key list
 * must reach every instance before the rotation: docs/decisions/0003-key-rotation.md, docs/deploying.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Command, CommandContext, CommandOptions } from '../context.js';
import { intOption, loadConfig, parseOptions, unknownSubcommand, usageError } from '../config.js';
import { writeJson } from '../output.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { Keyring } from '../../store/cipher.js';

const usage = `Usage:
  dropkey keys status [--json]
  dropkey keys rotate [--stdin | --new-key-file PATH] [--drop-old] [--batch N] [--json]
  dropkey keys prune [--json]
  dropkey keys generate

status    Which master keys exist, which one is active, and how many stored secrets each one encrypts.
rotate    Re-encrypts every stored secret (app secrets, tokens, pending logins, webhook secrets) under the active
          key, in small batches while dropkey keeps running, then reports.
          With the key file (no DROPKEY_MASTER_KEY): a new key is generated (or read with --stdin or
          --new-key-file), added to the key file and made active BEFORE anything is re-encrypted; the old key
          stays in the file (readable) until --drop-old removes keys no secret uses any more.
          With DROPKEY_MASTER_KEY: the first key listed is the target. Several instances: put the new key first in
          DROPKEY_MASTER_KEY on EVERY instance (keep the old one after it), restart them, then run
          "dropkey keys rotate", then remove the old key from DROPKEY_MASTER_KEY.
          An interrupted rotation is finished by running it again (no new key is made while one is pending).
          Key file: a running "dropkey serve" on the same data directory picks the new key up by itself.
prune     Removes from the key file every key no stored secret uses any more (never the active key). With
          DROPKEY_MASTER_KEY, says which keys you can remove from it.
generate  Prints a new random master key (base64) for DROPKEY_MASTER_KEY.

Options:
  --stdin              Read the new key (64 hex digits or base64 of 32 bytes) from standard input.
  --new-key-file PATH  Read the new key from a file.
  --drop-old           After a complete rotation, prune (single host: no other instance still needs the old key).
  --batch N            Rows per batch (default 200).
`;

type Ctx = Pick<CommandContext, 'env' | 'cwd' | 'stdin' | 'stdout' | 'stderr' | 'signal'>;

const subcommands = {
  status: { json: { type: 'boolean' } },
  rotate: { json: { type: 'boolean' }, stdin: { type: 'boolean' }, 'new-key-file': { type: 'string' }, 'drop-old': { type: 'boolean' }, batch: { type: 'string' } },
  prune: { json: { type: 'boolean' } },
  generate: {},
} as const satisfies Record<string, CommandOptions>;

const command: Command = {
  summary: 'Show, rotate, prune or generate master keys (re-encrypts every stored secret)',
  usage,
  options: {},
  subcommands,
  async run(ctx) {
    const [sub, ...rest] = ctx.argv;
    if (sub === 'generate') {
      parseOptions('keys generate', rest, subcommands.generate);
      const { randomBytes } = await import('node:crypto');
      ctx.stdout.write(`${randomBytes(32).toString('base64')}\n`);
      return;
    }
    if (sub !== 'status' && sub !== 'rotate' && sub !== 'prune') throw unknownSubcommand('keys', sub, Object.keys(subcommands));
    const { values } = parseOptions(`keys ${sub}`, rest, subcommands[sub]);
    const v = values as { json?: boolean; stdin?: boolean; 'new-key-file'?: string; 'drop-old'?: boolean; batch?: string };
    const batchSize = intOption('keys', 'batch', v.batch, { min: 1, max: 10_000 });
    if (v.stdin && v['new-key-file'] !== undefined) throw usageError('keys', 'give --stdin or --new-key-file, not both');
    if (sub === 'prune') return prune(ctx, v.json === true);
    return sub === 'status' ? status(ctx, v.json === true) : rotate(ctx, { ...v, batchSize });
  },
};
export default command;

interface Opened {
  keyring: Keyring;
  mode: 'env' | 'file';
  keyFile: string;
  withStore<T>(keyring: Keyring, fn: (port: import('../../store/rotation.js').SecretTablePort) => Promise<T>): Promise<T>;
}

async function open(ctx: Ctx): Promise<Opened> {
  const { keyringFromMasterKey } = await import('../../store/cipher.js');
  const { loadOrCreateKeyFile } = await import('../../store/key-file.js');
  const { openStore, openStores, storePaths } = await import('../../store/index.js');
  const { home, masterKey, databaseUrl } = await loadConfig(ctx.env, ctx.cwd);
  const paths = storePaths(home);
  if (!masterKey && !existsSync(paths.keyFile)) {
    // Opening the store decides: an empty store gets its key file (as on any first use); a store that holds
    // secrets without its key file is refused with the restore hint.
    await (await openStore({ home, databaseUrl })).close();
  }
  const keyring = masterKey ? keyringFromMasterKey(masterKey) : loadOrCreateKeyFile(paths.keyFile, { create: false });
  return {
    keyring,
    mode: masterKey ? 'env' : 'file',
    keyFile: paths.keyFile,
    async withStore(ring, fn) {
      // Opening the stores checks the keyring against the store's key check and runs the migrations.
      const stores = await openStores({ home, databaseUrl, keyring: ring });
      try {
        return await fn(stores.secrets);
      } finally {
        await stores.close();
      }
    },
  };
}

async function status(ctx: Ctx, json: boolean): Promise<void> {
  const o = await open(ctx);
  const { keyStatus } = await import('../../store/rotation.js');
  const st = await o.withStore(o.keyring, (port) => keyStatus(port));
  const pending = Object.entries(st.byKeyId).filter(([id]) => id !== o.keyring.activeKeyId).reduce((n, [, c]) => n + c, 0);
  if (json) {
    const { keyStatusJson } = await import('../../connections/json.js');
    writeJson(ctx, keyStatusJson({ source: o.mode, activeKeyId: o.keyring.activeKeyId, keyIds: o.keyring.keyIds, byKeyId: st.byKeyId, columns: st.columns }));
    return;
  }
  ctx.stdout.write(`Master keys (${o.mode === 'env' ? 'DROPKEY_MASTER_KEY' : o.keyFile}):\n`);
  for (const id of new Set([...o.keyring.keyIds, ...Object.keys(st.byKeyId)])) {
    const known = o.keyring.hasKey(id) ? '' : '  (NOT AVAILABLE: these secrets cannot be read)';
    ctx.stdout.write(`  ${id}${id === o.keyring.activeKeyId ? ' (active)' : ''}: ${st.byKeyId[id] ?? 0} secret(s)${known}\n`);
  }
  ctx.stdout.write(pending === 0 ? 'Every secret is under the active key.\n' : `${pending} secret(s) are not under the active key yet: run "dropkey keys rotate".\n`);
}

async function rotate(
  ctx: Ctx,
  v: { json?: boolean; stdin?: boolean; 'new-key-file'?: string; 'drop-old'?: boolean; batchSize: number | undefined },
): Promise<number> {
  const o = await open(ctx);
  const { keyStatus, rotateSecrets } = await import('../../store/rotation.js');
  const { replaceKeyFile } = await import('../../store/key-file.js');
  const supplied = v.stdin ? await readKey(ctx, 'stdin') : v['new-key-file'] !== undefined ? await readKey(ctx, v['new-key-file']) : undefined;
  const say = (line: string) => (v.json ? undefined : ctx.stderr.write(`${line}\n`));

  let target = o.keyring;
  if (o.mode === 'env') {
    if (supplied) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, 'with DROPKEY_MASTER_KEY set, the new key must come from DROPKEY_MASTER_KEY itself', {
        hint: 'put the new key FIRST in DROPKEY_MASTER_KEY on every instance (old key after it, comma-separated), restart them, then run "dropkey keys rotate" again; other instances could not read secrets written under a key they do not have',
      });
    }
  } else {
    // Finish a pending rotation before starting another: a new key now would leave three keys in play.
    const before = await o.withStore(o.keyring, (port) => keyStatus(port));
    const pending = Object.entries(before.byKeyId).some(([id, n]) => id !== o.keyring.activeKeyId && n > 0);
    if (pending && supplied === undefined) {
      say(`Finishing the rotation to key ${o.keyring.activeKeyId} started earlier (no new key is made).`);
    } else {
      const { randomBytes } = await import('node:crypto');
      target = o.keyring.withNewActiveKey(supplied ?? randomBytes(32));
      if (target.activeKeyId !== o.keyring.activeKeyId) {
        // The key file gains the new key BEFORE any secret is written under it; the old keys stay in it.
        replaceKeyFile(o.keyFile, target);
        say(`New master key ${target.activeKeyId} added to ${o.keyFile} and made active; old key(s) ${o.keyring.keyIds.filter((k) => k !== target.activeKeyId).join(', ')} kept readable.`);
      }
    }
  }

  const started = Date.now();
  const report = await o.withStore(target, (port) =>
    rotateSecrets(port, target, {
      ...(v.batchSize === undefined ? {} : { batchSize: v.batchSize }),
      signal: ctx.signal,
    }),
  );
  let dropped: string[] = [];
  if (v['drop-old'] && report.remaining === 0) {
    if (o.mode === 'env') say(`Now remove every key but ${target.activeKeyId} from DROPKEY_MASTER_KEY on every instance.`);
    else dropped = await pruneKeyFile(o, target);
  }
  if (v.json) {
    writeJson(ctx, { active_key_id: report.activeKeyId, rewritten: report.rewritten, raced: report.raced, remaining: report.remaining, dropped_key_ids: dropped, duration_ms: Date.now() - started, columns: report.columns });
  } else {
    ctx.stdout.write(`Re-encrypted ${report.rewritten} secret(s) under key ${report.activeKeyId} in ${Date.now() - started} ms; ${report.remaining} left under other keys.\n`);
    for (const c of report.columns.filter((x) => x.rewritten > 0 || x.remaining > 0)) ctx.stdout.write(`  ${c.table}.${c.column}: ${c.rewritten} rewritten, ${c.remaining} left\n`);
    if (o.mode === 'env' && target.keyIds.length === 1 && report.rewritten === 0) {
      ctx.stdout.write(
        'DROPKEY_MASTER_KEY lists one key and every secret is under it: nothing to rotate. To move to a new key: "dropkey keys generate", put the new key first in DROPKEY_MASTER_KEY on every instance (old key after it, comma-separated), restart them, run "dropkey keys rotate", then remove the old key.\n',
      );
    }
    if (dropped.length > 0) ctx.stdout.write(`Removed unused key(s) ${dropped.join(', ')} from ${o.keyFile}.\n`);
    else if (report.remaining === 0 && o.mode === 'file' && target.keyIds.length > 1) ctx.stdout.write(`Old key(s) are still in ${o.keyFile}; remove them with "dropkey keys prune" once every instance runs with the new key.\n`);
  }
  if (report.remaining > 0) {
    ctx.stderr.write(
      `dropkey: ${report.remaining} secret(s) are still under other keys: some instance keeps writing with an old active key. Give every instance the new key first (DROPKEY_MASTER_KEY, new key first), then run "dropkey keys rotate" again.\n`,
    );
    return 1;
  }
  return 0;
}

/** Removes unused keys from the key file (re-counted under the store, so a key still in use is never dropped). */
async function pruneKeyFile(o: Opened, ring: Keyring): Promise<string[]> {
  const { keyStatus } = await import('../../store/rotation.js');
  const { replaceKeyFile } = await import('../../store/key-file.js');
  const st = await o.withStore(ring, (port) => keyStatus(port));
  const unused = ring.keyIds.filter((id) => id !== ring.activeKeyId && (st.byKeyId[id] ?? 0) === 0);
  let next = ring;
  for (const id of unused) next = next.withoutKey(id);
  if (unused.length > 0) replaceKeyFile(o.keyFile, next);
  return unused;
}

async function prune(ctx: Ctx, json: boolean): Promise<number> {
  const o = await open(ctx);
  if (o.mode === 'env') {
    const { keyStatus } = await import('../../store/rotation.js');
    const st = await o.withStore(o.keyring, (port) => keyStatus(port));
    const unused = o.keyring.keyIds.filter((id) => id !== o.keyring.activeKeyId && (st.byKeyId[id] ?? 0) === 0);
    if (json) writeJson(ctx, { source: 'env', removable_key_ids: unused, dropped_key_ids: [] });
    else ctx.stdout.write(unused.length === 0 ? 'No key in DROPKEY_MASTER_KEY can be removed.\n' : `No secret uses ${unused.join(', ')}: remove it from DROPKEY_MASTER_KEY on every instance.\n`);
    return 0;
  }
  const dropped = await pruneKeyFile(o, o.keyring);
  if (json) writeJson(ctx, { source: 'file', dropped_key_ids: dropped });
  else ctx.stdout.write(dropped.length === 0 ? 'No unused key in the key file.\n' : `Removed unused key(s) ${dropped.join(', ')} from ${o.keyFile}.\n`);
  return 0;
}

/** Reads a new master key (hex or base64 of 32 bytes) and returns its bytes; the value never appears in errors. */
async function readKey(ctx: Ctx, from: string): Promise<Buffer> {
  let text: string;
  if (from === 'stdin') {
    const { readSecret } = await import('../input.js');
    text = await readSecret(ctx, 'new master key');
  } else {
    try {
      text = readFileSync(from, 'utf8');
    } catch (err) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `cannot read the new key file ${from}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { hint: 'give a readable file holding one key (dropkey keys generate > FILE)' });
    }
  }
  const { keyringFromMasterKey } = await import('../../store/cipher.js');
  const value = text.trim();
  if (value.includes(',')) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'give exactly one new key, not a list', { hint: 'dropkey keys generate prints one' });
  // keyringFromMasterKey validates the text exactly like DROPKEY_MASTER_KEY; the bytes come back through its
  // serialized form so that decoding lives in one place (store/cipher.ts).
  let ring: Keyring;
  try {
    ring = keyringFromMasterKey(value);
  } catch {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `the new key is not a 32-byte key in hex or base64 (got ${value.length} characters)`, {
      hint: 'generate one with: dropkey keys generate',
    });
  }
  const parsed = JSON.parse(ring.serialize()) as { keys: { key: string }[] };
  return Buffer.from(parsed.keys[0]!.key, 'base64');
}
