import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { KNOWN_SCOPES, ROUTE_SCOPES, isKnownScope, missingScopes, resolveNeeds, scopeForRoute, scopesForRoutes } from './scopes.js';

test('Dropbox OAuth guide: scopes mapping for the routes dropkey uses', () => {
  assert.equal(scopeForRoute('users/get_current_account'), 'account_info.read');
  assert.equal(scopeForRoute('/2/files/list_folder'), 'files.metadata.read');
  assert.equal(scopeForRoute('files/download'), 'files.content.read');
  assert.equal(scopeForRoute('files/upload'), 'files.content.write');
  assert.equal(scopeForRoute('team/get_info'), 'team_info.read');
  assert.equal(scopeForRoute('team/members/list_v2'), 'members.read');
  assert.equal(scopeForRoute('team/devices/list_members_devices'), 'sessions.list');
  assert.equal(scopeForRoute('team_log/get_events'), 'events.read');
  assert.equal(scopeForRoute('auth/token/revoke'), undefined);
  assert.equal(scopeForRoute('nope/nope'), undefined);
});

test('every route scope is a known scope, and every scope has a description', () => {
  for (const [route, { scope }] of Object.entries(ROUTE_SCOPES)) {
    if (scope) assert.ok(isKnownScope(scope), `${route}: ${scope}`);
  }
  for (const [s, d] of Object.entries(KNOWN_SCOPES)) assert.ok(d.length > 10, s);
});

test('the table agrees with the Stone spec where the spec has the route', () => {
  const dir = new URL('../../../shared/dropbox-api-spec/', import.meta.url);
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.stone'));
  } catch {
    return; // The spec copy is outside the repository; CI without it relies on the assertions above.
  }
  const spec = new Map<string, string | undefined>();
  for (const f of files) {
    const txt = readFileSync(new URL(f, dir), 'utf8');
    const ns = /^namespace (\w+)/m.exec(txt)?.[1];
    for (const m of txt.matchAll(/^route ([\w/]+)(?::(\d+))?\s*\([^)]*\)([\s\S]*?)(?=^route |^\S|$(?![\s\S]))/gm)) {
      const name = `${ns}/${m[1]}${m[2] && m[2] !== '1' ? `_v${m[2]}` : ''}`;
      spec.set(name, /scope\s*=\s*"([^"]+)"/.exec(m[3] ?? '')?.[1]);
    }
  }
  let compared = 0;
  for (const [route, { scope }] of Object.entries(ROUTE_SCOPES)) {
    if (!spec.has(route)) continue;
    assert.equal(scope, spec.get(route), route);
    compared++;
  }
  assert.ok(compared > 30, `compared ${compared}`);
});

test('missingScopes and resolveNeeds', () => {
  assert.deepEqual(missingScopes(['a', 'b'], ['b', 'c', 'c', 'd']), ['c', 'd']);
  assert.deepEqual(missingScopes(['a'], []), []);
  assert.deepEqual(missingScopes([], ['a']), []);
  assert.deepEqual(
    resolveNeeds(['files.content.read', 'files/upload', '/2/team/get_info', 'bogus', ' ', 'auth/token/revoke']),
    { scopes: ['files.content.read', 'files.content.write', 'team_info.read'], unknown: ['bogus'] },
  );
  assert.deepEqual(scopesForRoutes(['files/upload', 'files/upload_session/start', 'files/download']), [
    'files.content.write',
    'files.content.read',
  ]);
});
