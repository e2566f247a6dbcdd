import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { DropkeyError, ErrorCodes, FIX_ACTIONS, type Fix } from '../errors.js';
import { adviceLines, fixCommand } from './fix.js';
import { reportError } from './report.js';

test('every fix action renders as the command that does it', () => {
  const cases: [Fix, string][] = [
    [{ action: 'login' }, 'dropkey login'],
    [{ action: 'login', connection: 'c', app: 'a', addScopes: ['files.content.read', 'files.content.write'] }, 'dropkey login --connection c --app a --add-scope files.content.read --add-scope files.content.write'],
    [{ action: 'import', connection: 'c', app: 'a', token: 'refresh' }, 'dropkey import --connection c --app a --refresh-token -'],
    [{ action: 'import', token: 'access' }, 'dropkey import --connection NAME --app APP --access-token -'],
    [{ action: 'token' }, 'dropkey token'],
    [{ action: 'token', connection: 'c' }, 'dropkey token --connection c'],
    [{ action: 'doctor', connection: 'c' }, 'dropkey doctor --connection c'],
    [{ action: 'doctor', token: true }, 'dropkey doctor --token -'],
    [{ action: 'list-connections' }, 'dropkey list'],
    [{ action: 'revoke', connections: ['c'], force: true }, 'dropkey revoke --connection c --force'],
    [{ action: 'app-add' }, 'dropkey app add --name NAME --key APP_KEY --secret -'],
    [{ action: 'app-add', app: 'a', team: true }, 'dropkey app add --name a --key APP_KEY --secret - --team'],
    [{ action: 'app-update', app: 'a', field: 'secret' }, 'dropkey app update --name a --secret -'],
    [{ action: 'app-update', app: 'a', field: 'key' }, 'dropkey app update --name a --key APP_KEY'],
    [{ action: 'app-update', app: 'a', field: 'team' }, 'dropkey app update --name a --team'],
    [{ action: 'app-update', app: 'a', field: 'user' }, 'dropkey app update --name a --no-team'],
    [{ action: 'app-remove', app: 'a' }, 'dropkey app remove a'],
    [{ action: 'list-apps' }, 'dropkey app list'],
    [{ action: 'apikey-create' }, 'dropkey apikey create --name NAME --permission token:read --connection NAME'],
    [{ action: 'apikey-create', permission: 'proxy', connection: 'c' }, 'dropkey apikey create --name NAME --permission proxy --connection c'],
    [{ action: 'apikey-revoke', name: 'k' }, 'dropkey apikey revoke k'],
    [{ action: 'list-apikeys' }, 'dropkey apikey list'],
  ];
  for (const [fix, command] of cases) assert.equal(fixCommand(fix), command);
  assert.deepEqual(new Set(cases.map(([f]) => f.action)), new Set(FIX_ACTIONS), 'every action is covered');
});

test('the CLI prints the message, the hint in words, then the command to run', () => {
  const chunks: string[] = [];
  const stderr = new Writable({ write: (chunk, _enc, done) => (chunks.push(String(chunk)), done()) });
  const err = new DropkeyError(ErrorCodes.REAUTH_REQUIRED, 'Connection "gone" must be authorized again.', {
    hint: 'Connect it again with a browser login.',
    fix: { action: 'login', connection: 'gone', app: 'rv' },
  });
  const code = reportError(err, { stderr, env: {} });
  const out = chunks.join('');
  assert.equal(code, 1);
  assert.equal(
    out,
    'dropkey: Connection "gone" must be authorized again.\n  Connect it again with a browser login.\n  Run: dropkey login --connection gone --app rv\n',
  );
  assert.deepEqual(adviceLines({ hint: 'a\nb' }), ['a', 'b']);
  assert.deepEqual(adviceLines({ fix: { action: 'list-apps' } }), ['Run: dropkey app list']);
});
