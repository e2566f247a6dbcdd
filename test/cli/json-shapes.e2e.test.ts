/**
 * One JSON shape per object: the CLI's --json output and the API's answers for the same connection, token and API
 * key have the same fields (and the same values where time does not move them), and every shape, the master key
 * status included, is the one the OpenAPI document (/api/openapi.json) describes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { run } from '../../src/cli/index.js';
import { readConfig } from '../../src/config.js';
import { Dropkey } from '../../src/connections/dropkey.js';
import { dropboxUrlsFromBase } from '../../src/dropbox/hosts.js';
import { startServer, type RunningServer } from '../../src/server/main.js';
import { startEmulator, type StartedEmulator } from '../helpers/emulator.js';

type Json = Record<string, unknown>;

let emu: StartedEmulator;
let home: string;
let env: Record<string, string>;
let server: RunningServer;
const stop = new AbortController();
let adminKey: string;
let schemas: Record<string, { required?: string[]; properties: Record<string, unknown> }>;

async function cli(args: string[]): Promise<any> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  const code = await run(args, { env, cwd: home, stdin: new PassThrough(), stdout: out, stderr: err, signal: new AbortController().signal });
  assert.equal(code, 0, `dropkey ${args.join(' ')}: ${e}`);
  return JSON.parse(o);
}

async function api(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${server.url}/api/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${adminKey}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${await res.clone().text()}`);
  return res.json();
}

/** The object has exactly the fields the OpenAPI schema lists, all of them required. */
function assertShape(name: string, obj: Json): void {
  const schema = schemas[name];
  assert.ok(schema, `the OpenAPI document has no ${name} schema`);
  const props = Object.keys(schema.properties).sort();
  assert.deepEqual(Object.keys(obj).sort(), props, `${name}: the output's fields are the schema's`);
  assert.deepEqual([...(schema.required ?? [])].sort(), props, `${name}: every field is required (null when unknown)`);
}

function sameExceptTime(a: Json, b: Json, moving: string[]): void {
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
  for (const k of Object.keys(a)) {
    if (moving.includes(k)) continue;
    assert.deepEqual(a[k], b[k], `field ${k}`);
  }
}

before(async () => {
  emu = await startEmulator({});
  home = mkdtempSync(join(tmpdir(), 'dropkey-json-shapes-'));
  env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: randomBytes(32).toString('base64'), DROPKEY_DROPBOX_URL: emu.url };
  const app = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  const account = await emu.control.createAccount();
  const grant = await emu.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' });
  const dk = await Dropkey.open({ home, masterKey: env['DROPKEY_MASTER_KEY']!, urls: dropboxUrlsFromBase(emu.url) });
  await dk.addApp({ name: 'main', key: app.key, secret: app.secret! });
  await dk.import({ connection: 'alpha', app: 'main', refreshToken: grant.refresh_token! });
  await dk.close();
  server = await startServer({ config: await readConfig(env), port: 0, stdout: new PassThrough(), logStream: new PassThrough(), signal: stop.signal });
  const made = await cli(['apikey', 'create', '--name', 'ops', '--permission', 'admin', '--permission', 'token:read', '--all-connections', '--json']);
  adminKey = made.key;
  schemas = ((await (await fetch(`${server.url}/api/openapi.json`)).json()) as { components: { schemas: typeof schemas } }).components.schemas;
});

after(async () => {
  stop.abort();
  await server?.done;
  await emu?.close();
  rmSync(home, { recursive: true, force: true });
});

describe('the CLI and the API show each object the same way', () => {
  test('connection: list --json and refresh --json are the API\'s connection object', async () => {
    const fromApi = (await api('GET', '/connections/alpha')).connection;
    const fromCli = (await cli(['list', '--json'])).find((c: Json) => c['name'] === 'alpha');
    assertShape('Connection', fromApi);
    assertShape('Connection', fromCli);
    sameExceptTime(fromCli, fromApi, ['expires_in']);
    assert.ok(Math.abs(fromCli.expires_in - fromApi.expires_in) <= 2);

    const refreshedByCli = await cli(['refresh', '--connection', 'alpha', '--json']);
    const refreshedByApi = (await api('POST', '/connections/alpha/refresh')).connection;
    assertShape('Connection', refreshedByCli);
    assertShape('Connection', refreshedByApi);
    sameExceptTime(refreshedByCli, refreshedByApi, ['expires_in', 'expires_at', 'last_refresh_at', 'updated_at']);
  });

  test('token: dropkey token --json is the token endpoint\'s answer', async () => {
    const fromApi = await api('GET', '/connections/alpha/token');
    const fromCli = await cli(['token', '--connection', 'alpha', '--json']);
    assertShape('Token', fromApi);
    assertShape('Token', fromCli);
    sameExceptTime(fromCli, fromApi, ['access_token', 'expires_at', 'expires_in']);
    assert.equal(fromCli.scope, fromCli.scopes.join(' '));
  });

  test('API key: apikey create --json and apikey list --json are the API\'s answers', async () => {
    const byCli = await cli(['apikey', 'create', '--name', 'reader', '--permission', 'token:read', '--connection', 'alpha', '--json']);
    const byApi = await api('POST', '/api-keys', { name: 'reader2', permissions: ['token:read'], connections: ['alpha'] });
    assert.deepEqual(Object.keys(byCli).sort(), ['api_key', 'key']);
    assert.deepEqual(Object.keys(byApi).sort(), ['api_key', 'key']);
    assertShape('ApiKey', byCli.api_key);
    assertShape('ApiKey', byApi.api_key);
    assert.match(byCli.api_key.created_by, /^cli:/, 'the CLI says who created it');

    const listed = (await cli(['apikey', 'list', '--json'])).find((k: Json) => k['name'] === 'reader');
    const fromApi = (await api('GET', '/api-keys')).api_keys.find((k: Json) => k['name'] === 'reader');
    assertShape('ApiKey', listed);
    assert.deepEqual(listed, fromApi);
  });

  test('key status: keys status --json is the KeyStatus schema, snake_case all the way down', async () => {
    const st = await cli(['keys', 'status', '--json']);
    assertShape('KeyStatus', st);
    assert.equal(st.source, 'env');
    assert.ok(st.columns.length > 0);
    for (const c of st.columns) assert.deepEqual(Object.keys(c).sort(), ['column', 'secrets_by_key_id', 'table']);
    assert.equal(st.not_under_active_key, 0);
  });
});
