import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  codeChallengeS256,
  constantTimeEqual,
  generateCodeVerifier,
  generateState,
  isValidCodeVerifier,
} from './pkce.js';
import { DropkeyError } from '../errors.js';

// RFC 7636 Appendix B.
const RFC_OCTETS = [
  116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37, 77, 105, 214, 191, 240,
  91, 88, 5, 88, 83, 132, 141, 121,
];
const RFC_VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
const RFC_CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';

test('S256 challenge matches RFC 7636 Appendix B', () => {
  assert.equal(codeChallengeS256(RFC_VERIFIER), RFC_CHALLENGE);
});

test('verifier from injected bytes reproduces the RFC verifier', () => {
  // 43 chars need 33 bytes; a zero 33rd byte leaves the 43rd character as in the RFC's 32-byte encoding.
  const v = generateCodeVerifier({ length: 43, randomBytes: (n) => Uint8Array.from([...RFC_OCTETS, 0].slice(0, n)) });
  assert.equal(v, RFC_VERIFIER);
});

test('default verifier is 128 unreserved characters and differs each time', () => {
  const a = generateCodeVerifier();
  const b = generateCodeVerifier();
  assert.equal(a.length, 128);
  assert.match(a, /^[A-Za-z0-9_-]{128}$/);
  assert.ok(isValidCodeVerifier(a));
  assert.notEqual(a, b);
});

test('verifier length outside 43..128 is refused', () => {
  assert.throws(() => generateCodeVerifier({ length: 42 }), DropkeyError);
  assert.throws(() => generateCodeVerifier({ length: 129 }), DropkeyError);
  assert.throws(() => generateCodeVerifier({ length: 64, randomBytes: () => new Uint8Array(3) }), DropkeyError);
});

test('challenge refuses invalid verifiers', () => {
  assert.throws(() => codeChallengeS256('short'), DropkeyError);
  assert.throws(() => codeChallengeS256('a'.repeat(43) + ' '), DropkeyError);
  assert.throws(() => codeChallengeS256('é'.repeat(50)), DropkeyError);
  assert.equal(codeChallengeS256('a'.repeat(43) + '.~').length, 43);
});

test('state has at least 128 bits, base64url', () => {
  const s = generateState();
  assert.match(s, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(generateState({ bytes: 16, randomBytes: (n) => new Uint8Array(n).fill(255) }), '_____________________w');
  assert.throws(() => generateState({ bytes: 8 }), DropkeyError);
  assert.notEqual(generateState(), generateState());
});

test('constantTimeEqual', () => {
  assert.equal(constantTimeEqual('abc', 'abc'), true);
  assert.equal(constantTimeEqual('abc', 'abd'), false);
  assert.equal(constantTimeEqual('abc', 'abcd'), false);
  assert.equal(constantTimeEqual('', ''), true);
});
