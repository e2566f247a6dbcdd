import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateApiKey, hashPassword, hexEqual, looksLikeApiKey, passwordProblem, sha256Hex, verifyPassword } from './secrets.js';

test('passwords: scrypt with a per-user salt; verify accepts only the right password; tampered hashes fail closed', async () => {
  const a = await hashPassword('correct horse battery');
  const b = await hashPassword('correct horse battery');
  assert.notEqual(a, b, 'salted');
  assert.match(a, /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
  assert.equal(await verifyPassword('correct horse battery', a), true);
  assert.equal(await verifyPassword('correct horse batterY', a), false);
  assert.equal(await verifyPassword('correct horse battery', 'plain'), false);
  assert.equal(await verifyPassword('x', 'scrypt$99999999$8$1$AAAA$BBBB'), false, 'absurd parameters refused');
  assert.equal(await verifyPassword('correct horse battery', a.replace(/\$[^$]+$/, '$AAAA')), false, 'short hash refused');
  assert.equal(passwordProblem('short'), 'The password must be at least 12 characters long.');
  assert.equal(passwordProblem('long enough password'), undefined);
});

test('API keys: dk_ + 256 bits; prefix and SHA-256 hash; format check', () => {
  const k = generateApiKey();
  assert.match(k.key, /^dk_[A-Za-z0-9_-]{43}$/);
  assert.equal(k.prefix, k.key.slice(0, 11));
  assert.equal(k.hash, sha256Hex(k.key));
  assert.equal(looksLikeApiKey(k.key), true);
  assert.equal(looksLikeApiKey(`${k.key}x`), false);
  assert.notEqual(generateApiKey().key, k.key);
  const fixed = generateApiKey((n) => Buffer.alloc(n, 7));
  assert.equal(fixed.key, `dk_${Buffer.alloc(32, 7).toString('base64url')}`);
});

test('hexEqual compares digests in constant time and never throws on length mismatch', () => {
  const h = sha256Hex('a');
  assert.equal(hexEqual(h, sha256Hex('a')), true);
  assert.equal(hexEqual(h, sha256Hex('b')), false);
  assert.equal(hexEqual(h, h.slice(2)), false);
  assert.equal(hexEqual('abc', 'abc'), false, 'odd length is not a digest');
});
