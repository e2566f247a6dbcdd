import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { deriveKeyId, isCiphertext, Keyring, keyringFromMasterKey, parseCiphertext, secretContext } from './cipher.js';
import { loadOrCreateKeyFile, replaceKeyFile } from './key-file.js';

const ctx = secretContext('connection', 'default', 'refresh_token');

function keyError(re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof DropkeyError, String(e));
    assert.equal(e.code, ErrorCodes.KEY_ERROR, e.message);
    if (re) assert.match(`${e.message}\n${e.hint ?? ''}`, re);
    return true;
  };
}

describe('Keyring', () => {
  it('round-trips text (unicode, empty, long) and records the key id in the ciphertext', () => {
    const k = Keyring.generate();
    for (const text of ['refresh-token-abc', '', 'ünïcødé 🔑', 'x'.repeat(10_000)]) {
      const c = k.encrypt(text, ctx);
      assert.ok(c.startsWith(`dk1.${k.activeKeyId}.`), c);
      assert.ok(isCiphertext(c));
      assert.equal(k.decrypt(c, ctx), text);
    }
  });

  it('uses a fresh IV every time', () => {
    const k = Keyring.generate();
    const a = k.encrypt('same', ctx);
    const b = k.encrypt('same', ctx);
    assert.notEqual(a, b);
    assert.notEqual(a.split('.')[2], b.split('.')[2]);
  });

  it('fails authentication when the AAD (record or field) differs', () => {
    const k = Keyring.generate();
    const c = k.encrypt('tok', ctx);
    assert.throws(() => k.decrypt(c, secretContext('connection', 'other', 'refresh_token')), keyError(/authentication/));
    assert.throws(() => k.decrypt(c, secretContext('connection', 'default', 'access_token')), keyError(/authentication/));
    assert.throws(() => k.decrypt(c, secretContext('app', 'default', 'refresh_token')), keyError());
  });

  it('fails authentication when the ciphertext or tag is altered', () => {
    const k = Keyring.generate();
    const c = k.encrypt('tok-value', ctx);
    const parts = c.split('.');
    const body = Buffer.from(parts[3]!, 'base64url');
    body[0] = body[0]! ^ 1;
    assert.throws(() => k.decrypt([...parts.slice(0, 3), body.toString('base64url')].join('.'), ctx), keyError(/authentication/));
    const truncated = [...parts.slice(0, 3), Buffer.from(parts[3]!, 'base64url').subarray(0, 10).toString('base64url')].join('.');
    assert.throws(() => k.decrypt(truncated, ctx), keyError());
  });

  it('refuses an unknown key id, naming it and saying what to do', () => {
    const writer = Keyring.generate();
    const c = writer.encrypt('tok', ctx);
    const fromFile = new Keyring([{ id: 'other1', key: randomBytes(32), created: null }], 'other1', { kind: 'file', path: '/data/master.key' });
    assert.throws(() => fromFile.decrypt(c, ctx), (e: unknown) => {
      keyError()(e);
      const err = e as DropkeyError;
      assert.ok(err.message.includes(writer.activeKeyId));
      assert.match(err.hint ?? '', /DROPKEY_MASTER_KEY/);
      assert.match(err.hint ?? '', /restore \/data\/master\.key/);
      assert.equal(err.message.includes('tok'), false);
      return true;
    });
  });

  it('refuses malformed ciphertexts (including plaintext) with KEY_ERROR', () => {
    const k = Keyring.generate();
    for (const bad of ['plain-token', 'dk1.k1.abc', 'dk2.kx.AAAAAAAAAAAAAAAA.AAAA', `dk1.${k.activeKeyId}.short.AAAA`, `dk1.${k.activeKeyId}.AAAAAAAAAAAAAAAA.!!`]) {
      assert.throws(() => k.decrypt(bad, ctx), keyError());
      assert.equal(isCiphertext(bad), false);
    }
  });

  it('rotation helpers: a new active key, old ciphertexts still readable, reencrypt moves them', () => {
    const old = Keyring.generate();
    const c = old.encrypt('tok', ctx);
    const both = old.withNewActiveKey();
    assert.notEqual(both.activeKeyId, old.activeKeyId);
    assert.deepEqual(new Set(both.keyIds), new Set([old.activeKeyId, both.activeKeyId]));
    assert.equal(both.needsReencrypt(c), true);
    const moved = both.reencrypt(c, ctx);
    assert.equal(both.needsReencrypt(moved), false);
    assert.equal(both.reencrypt(moved, ctx), moved, 'already current: unchanged');
    assert.equal(both.decrypt(moved, ctx), 'tok');
    const onlyNew = both.withoutKey(old.activeKeyId);
    assert.equal(onlyNew.decrypt(moved, ctx), 'tok');
    assert.throws(() => onlyNew.decrypt(c, ctx), keyError(new RegExp(old.activeKeyId)));
    assert.throws(() => onlyNew.withoutKey(onlyNew.activeKeyId), keyError(/active/));
  });

  it('never shows key material or plaintext in toJSON, inspect or errors', () => {
    const key = randomBytes(32);
    const k = Keyring.fromKey(key);
    const shown = JSON.stringify(k) + inspect(k, { showHidden: true, depth: 10 }) + String(k);
    for (const enc of ['base64', 'hex', 'base64url'] as const) assert.equal(shown.includes(key.toString(enc)), false, enc);
    assert.ok(shown.includes(k.activeKeyId));
  });
});

describe('DROPKEY_MASTER_KEY', () => {
  const key = randomBytes(32);

  it('accepts hex, base64 and base64url of 32 bytes, all giving the same key id', () => {
    const ids = [key.toString('hex'), key.toString('hex').toUpperCase(), key.toString('base64'), key.toString('base64url'), ` ${key.toString('base64')}\n`].map(
      (v) => keyringFromMasterKey(v).activeKeyId,
    );
    assert.deepEqual(new Set(ids), new Set([deriveKeyId(key)]));
    assert.deepEqual(keyringFromMasterKey(key.toString('hex')).source, { kind: 'env' });
  });

  it('accepts several keys for a rotation, the first one active', () => {
    const other = randomBytes(32);
    const k = keyringFromMasterKey(`${other.toString('base64')},${key.toString('hex')}`);
    assert.equal(k.activeKeyId, deriveKeyId(other));
    assert.deepEqual(k.keyIds.sort(), [deriveKeyId(other), deriveKeyId(key)].sort());
  });

  it('refuses anything else with a hint, never echoing the value', () => {
    const bad = [
      '',
      '   ',
      'hunter2',
      key.subarray(0, 31).toString('hex'),
      key.toString('hex') + 'ab',
      randomBytes(33).toString('base64'),
      key.subarray(0, 16).toString('base64'),
      'g'.repeat(64),
      key.toString('base64').slice(0, 20) + ' ' + key.toString('base64').slice(21),
      key.toString('base64').slice(0, 42) + 'B=', // non-canonical trailing bits
      `${key.toString('hex')},`,
      `${key.toString('hex')},${key.toString('base64')}`, // the same key twice
    ];
    for (const v of bad) {
      assert.throws(
        () => keyringFromMasterKey(v),
        (e: unknown) => {
          keyError(/32/)(e);
          const err = e as DropkeyError;
          if (v.trim().length >= 6) assert.equal(`${err.message}${err.hint}`.includes(v.trim()), false, 'the value is not echoed');
          assert.match(err.hint ?? '', /randomBytes\(32\)/);
          return true;
        },
        JSON.stringify(v),
      );
    }
  });
});

describe('key file', () => {
  function dir(): string {
    return mkdtempSync(join(tmpdir(), 'dropkey-key-'));
  }

  it('is created on first use with mode 0600 in the v1 JSON format, then reused', () => {
    const d = dir();
    try {
      const path = join(d, 'home', 'master.key');
      const warnings: string[] = [];
      const k1 = loadOrCreateKeyFile(path, { warn: (m) => warnings.push(m) });
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(statSync(join(d, 'home')).mode & 0o777, 0o700);
      const json = JSON.parse(readFileSync(path, 'utf8'));
      assert.equal(json.version, 1);
      assert.equal(json.active, k1.activeKeyId);
      assert.equal(json.keys.length, 1);
      assert.equal(Buffer.from(json.keys[0].key, 'base64').length, 32);
      assert.equal(deriveKeyId(Buffer.from(json.keys[0].key, 'base64')), k1.activeKeyId);
      assert.ok(!Number.isNaN(Date.parse(json.keys[0].created)));
      const k2 = loadOrCreateKeyFile(path, { warn: (m) => warnings.push(m) });
      assert.equal(k2.activeKeyId, k1.activeKeyId);
      assert.equal(k2.decrypt(k1.encrypt('x', ctx), ctx), 'x');
      assert.deepEqual(warnings, []);
      assert.deepEqual(readdirSync(join(d, 'home')), ['master.key'], 'no temporary files left behind');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('keeps every key of a rotated file readable', () => {
    const d = dir();
    try {
      const path = join(d, 'master.key');
      const old = loadOrCreateKeyFile(path, { warn: () => {} });
      const c = old.encrypt('tok', ctx);
      const rotated = old.withNewActiveKey();
      writeFileSync(path, rotated.serialize(), { mode: 0o600 });
      const loaded = loadOrCreateKeyFile(path, { warn: () => {} });
      assert.equal(loaded.activeKeyId, rotated.activeKeyId);
      assert.equal(loaded.decrypt(c, ctx), 'tok');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('a keyring loaded from the file follows a rotation written by another process: it reads and writes under the new key', () => {
    const d = dir();
    try {
      const path = join(d, 'master.key');
      const running = loadOrCreateKeyFile(path, { warn: () => {} }); // e.g. a dropkey serve started earlier
      const oldId = running.activeKeyId;
      const before = running.encrypt('old secret', ctx);
      // `dropkey keys rotate` elsewhere: the file gains a new active key (atomic replace), then secrets move to it.
      const rotator = loadOrCreateKeyFile(path, { warn: () => {} }).withNewActiveKey();
      replaceKeyFile(path, rotator);
      const moved = rotator.encrypt('new secret', ctx);
      assert.notEqual(rotator.activeKeyId, oldId);
      assert.equal(running.decrypt(moved, ctx), 'new secret', 'reads what the rotation wrote');
      assert.equal(running.activeKeyId, rotator.activeKeyId, 'writes under the new active key from now on');
      assert.equal(parseCiphertext(running.encrypt('x', ctx)).keyId, rotator.activeKeyId);
      assert.equal(running.decrypt(before, ctx), 'old secret', 'old ciphertexts stay readable');
      // A file that is broken right now is ignored: the keys already held keep working.
      writeFileSync(path, 'garbage');
      assert.equal(running.decrypt(moved, ctx), 'new secret');
      assert.throws(() => running.decrypt(Keyring.generate().encrypt('z', ctx), ctx), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.KEY_ERROR);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('refuses a corrupt, truncated, wrong-length or unknown-format file and leaves it byte-for-byte untouched', () => {
    const good = JSON.parse(Keyring.generate().serialize());
    const cases: [string, string | Buffer, RegExp][] = [
      ['empty', '', /empty/],
      ['not JSON', 'hello', /not JSON/],
      ['binary junk', randomBytes(64), /not JSON/],
      ['truncated', Keyring.generate().serialize().slice(0, 60), /not JSON/],
      ['a bare key', randomBytes(32).toString('base64'), /not JSON|not a JSON object/],
      ['an array', '[]', /not a JSON object/],
      ['newer version', JSON.stringify({ ...good, version: 2 }), /version 2/],
      ['no version', JSON.stringify({ keys: good.keys, active: good.active }), /no format version/],
      ['no keys', JSON.stringify({ ...good, keys: [] }), /no keys/],
      ['short key', JSON.stringify({ ...good, keys: [{ ...good.keys[0], key: randomBytes(16).toString('base64') }] }), /32 bytes/],
      ['long key', JSON.stringify({ ...good, keys: [{ ...good.keys[0], key: randomBytes(48).toString('base64') }] }), /32 bytes/],
      ['bad id', JSON.stringify({ ...good, keys: [{ ...good.keys[0], id: 'a.b' }], active: 'a.b' }), /valid id/],
      ['unknown active', JSON.stringify({ ...good, active: 'nope' }), /active/],
      ['duplicate id', JSON.stringify({ ...good, keys: [good.keys[0], good.keys[0]] }), /twice/],
    ];
    for (const [what, content, re] of cases) {
      const d = dir();
      try {
        const path = join(d, 'master.key');
        writeFileSync(path, content, { mode: 0o600 });
        const before = readFileSync(path);
        assert.throws(
          () => loadOrCreateKeyFile(path, { warn: () => {} }),
          (e: unknown) => {
            keyError(re)(e);
            const err = e as DropkeyError;
            assert.ok(err.message.includes(path));
            assert.match(err.hint ?? '', /will not replace it/);
            assert.match(err.hint ?? '', /DROPKEY_MASTER_KEY/);
            for (const k of good.keys) assert.equal(`${err.message}${err.hint}`.includes(k.key), false);
            return true;
          },
          what,
        );
        assert.deepEqual(readFileSync(path), before, `${what}: file unchanged`);
        assert.deepEqual(readdirSync(d), ['master.key'], `${what}: nothing else written`);
      } finally {
        rmSync(d, { recursive: true, force: true });
      }
    }
  });

  it('with create: false, a missing file is an error and nothing is created', () => {
    const d = dir();
    try {
      const path = join(d, 'master.key');
      assert.throws(() => loadOrCreateKeyFile(path, { create: false, warn: () => {} }), keyError(/missing/));
      assert.deepEqual(readdirSync(d), []);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('warns about a group/world-writable directory and a readable key file', () => {
    const d = dir();
    try {
      const home = join(d, 'home');
      mkdirSync(home);
      chmodSync(home, 0o777);
      const path = join(home, 'master.key');
      const warnings: string[] = [];
      loadOrCreateKeyFile(path, { warn: (m) => warnings.push(m) });
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /writable by other users.*chmod 700/);
      chmodSync(home, 0o700);
      chmodSync(path, 0o644);
      warnings.length = 0;
      loadOrCreateKeyFile(path, { warn: (m) => warnings.push(m) });
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /readable by other users.*chmod 600/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
