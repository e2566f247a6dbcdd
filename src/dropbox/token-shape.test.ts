import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diagnoseTokenShape, normalizePastedToken, tokenFingerprint } from './token-shape.js';
import { fixCommand } from '../cli/fix.js';

const SL = 'sl.u.AbX9y6Fe3AuH5o66-gmJpR032jwAwQPIVVzWXZNkdzcYT02akC2de219dZi6gxYPVnYPrpvISRSf9lxKWJzYLjtMPH-d9fo_0gXex7X37VIvpty4-G8f4-WX45AcEPfRnJJDwzv-';
const REFRESH = 'nBiM85CZALsAAAAAAAAAAQXHBoNpNutK4ngsXHsqW4iGz9tisb3JyjGqikMJIYbd';

function ids(raw: string, expect?: 'access' | 'refresh') {
  const r = diagnoseTokenShape(raw, expect ? { expect } : {});
  // The token itself must never be echoed, in any field.
  const printed = JSON.stringify(r);
  const clean = normalizePastedToken(raw, expect).value;
  if (clean.length >= 8) assert.ok(!printed.includes(clean.slice(4)), `token echoed for ${r.kind}`);
  return { kind: r.kind, ids: r.findings.map((f) => f.id), report: r };
}

test('short-lived access token: informational', () => {
  const r = ids(SL);
  assert.equal(r.kind, 'short_lived_access');
  assert.deepEqual(r.ids, ['token.short_lived']);
  assert.equal(r.report.findings[0]!.severity, 'info');
  assert.equal(r.report.fingerprint, `sl.u…(${SL.length} chars)`);
});

test('refresh-shaped value: ambiguous alone, a warning where an access token belongs', () => {
  assert.deepEqual(ids(REFRESH).ids, ['token.long_lived_or_refresh']);
  const a = ids(REFRESH, 'access');
  assert.equal(a.kind, 'long_lived_or_refresh');
  assert.deepEqual(a.ids, ['token.refresh_as_access']);
  assert.match(fixCommand(a.report.findings[0]!.fix!), /--refresh-token -/);
  assert.deepEqual(ids(REFRESH, 'refresh').ids, ['token.long_lived_or_refresh']);
});

test('access token where a refresh token belongs', () => {
  const r = ids(SL, 'refresh');
  assert.deepEqual(r.ids, ['token.access_as_refresh']);
  assert.equal(r.report.findings[0]!.severity, 'error');
});

test('truncated tokens', () => {
  assert.equal(ids(SL.slice(0, 60)).kind, 'truncated');
  assert.deepEqual(ids(REFRESH.slice(0, 50)).ids, ['token.truncated']);
});

test('app key or secret', () => {
  const r = ids('a1b2c3d4e5f6g7h');
  assert.equal(r.kind, 'app_key_or_secret');
  assert.deepEqual(r.ids, ['token.app_credential']);
  assert.equal(r.report.fingerprint, '(15 chars)');
});

test('whitespace, newlines, quotes, Bearer, assignments, wrapped lines, JSON are stripped and reported', () => {
  assert.deepEqual(ids(`${SL}\n`).ids, ['token.whitespace', 'token.short_lived']);
  assert.deepEqual(ids(`"${SL}"`).ids, ['token.quotes', 'token.short_lived']);
  assert.deepEqual(ids(`Bearer ${SL}`).ids, ['token.bearer_prefix', 'token.short_lived']);
  assert.deepEqual(ids(`Authorization: Bearer ${SL}`).ids, ['token.bearer_prefix', 'token.short_lived']);
  assert.deepEqual(ids(`export DROPBOX_TOKEN='${SL}'`).ids, ['token.assignment', 'token.quotes', 'token.short_lived']);
  assert.deepEqual(ids(`${SL.slice(0, 70)}\n${SL.slice(70)}`).ids, ['token.inner_whitespace', 'token.short_lived']);
  const j = ids(JSON.stringify({ access_token: SL, refresh_token: REFRESH }), 'refresh');
  assert.equal(j.kind, 'long_lived_or_refresh');
  assert.deepEqual(j.ids, ['token.json', 'token.long_lived_or_refresh']);
  assert.equal(normalizePastedToken(`  "Bearer ${SL}"\r\n`).value, SL);
});

test('empty, masked, foreign characters, unknown shape', () => {
  assert.deepEqual(ids('').ids, ['token.empty']);
  assert.deepEqual(ids('  \n').ids, ['token.whitespace', 'token.empty']);
  assert.ok(ids('sl.u.AbX9…').ids.includes('token.masked'));
  assert.ok(ids(`${REFRESH.slice(0, 30)}****${REFRESH.slice(34)}`).ids.includes('token.masked'));
  assert.ok(ids(`${SL}é`).ids.includes('token.bad_characters'));
  assert.deepEqual(ids('x'.repeat(200)).ids, ['token.unknown_shape']);
});

test('fingerprint never shows more than 4 characters', () => {
  assert.equal(tokenFingerprint(REFRESH), 'nBiM…(64 chars)');
  assert.equal(tokenFingerprint('short'), '(5 chars)');
  assert.equal(tokenFingerprint(''), '(empty)');
});
