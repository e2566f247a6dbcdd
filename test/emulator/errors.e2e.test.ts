/**
 * One test per error family, each asserting status, Content-Type and body shape as https://www.dropbox.com/developers/documentation/http/documentation#error-handling documents
 * them (and Dropbox docs: oauth2/token, Dropbox docs: files routes for the route error unions). After every bad request the server must still answer.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEmulator, userWithToken, headerSafeJson, type StartedEmulator, type RawResponse } from '../helpers/emulator.js';

let emu: StartedEmulator;
let token: string;
let appKey: string;
let accountId: string;

before(async () => {
  emu = await startEmulator();
  const u = await userWithToken(emu);
  token = u.token.access_token;
  appKey = u.app.key;
  accountId = u.account.account_id;
});
after(async () => {
  await emu?.close();
});

/** Dropbox docs: errors: 400s are text, `Error in call to API function "<route>": <reason>`. */
function assert400Text(r: RawResponse, route: string, reason?: RegExp): void {
  assert.equal(r.status, 400, `expected 400, got ${r.status}: ${r.text}`);
  assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.ok(r.text.startsWith(`Error in call to API function "${route}": `), `400 body prefix: ${JSON.stringify(r.text)}`);
  if (reason) assert.match(r.text, reason);
}

/** Dropbox docs: errors: 401/409 are JSON `{error_summary, error}`; the summary is the tags joined by "/" then "/" and dots. */
function assertJsonError(r: RawResponse, status: number, summaryTags: string, error: unknown): void {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.ok(r.json, `JSON body: ${r.text}`);
  const escaped = summaryTags.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  assert.match(r.json.error_summary, new RegExp(`^${escaped}/\\.*$`));
  assert.deepEqual(r.json.error, error);
}

async function stillAnswers(): Promise<void> {
  const r = await emu.rpc('users/get_current_account', undefined, token);
  assert.equal(r.status, 200, `server still answers: ${r.status} ${r.text}`);
  assert.equal(r.json.account_id, accountId);
}

test('authentication: missing header is a 400 text error', async () => {
  const r = await emu.rpc('users/get_current_account', undefined, null);
  assert400Text(r, 'users/get_current_account', /"Authorization"/);
  await stillAnswers();
});

test('authentication: malformed Authorization values are 400 text errors', async () => {
  const wrongScheme = await emu.rpc('users/get_current_account', undefined, null, { Authorization: 'Token abcdef' });
  assert400Text(wrongScheme, 'users/get_current_account', /Bearer/);
  const badChars = await emu.rpc('users/get_current_account', undefined, null, { Authorization: 'Bearer !!!not*a*token###' });
  assert400Text(badChars, 'users/get_current_account', /malformed|Authorization/);
  await stillAnswers();
});

test('authentication: an unknown well-formed token is 401 invalid_access_token', async () => {
  const fake = 'sl.' + 'A'.repeat(120) + '-' + 'b'.repeat(20);
  const r = await emu.rpc('users/get_current_account', undefined, fake);
  assertJsonError(r, 401, 'invalid_access_token', { '.tag': 'invalid_access_token' });
  await stillAnswers();
});

test('authentication: a team token on a user route without Dropbox-API-Select-User is 400 text', async () => {
  const teamApp = await emu.control.createApp({ team: true, scopes: ['team_info.read', 'members.read', 'team_data.member', 'files.metadata.read', 'account_info.read'] });
  const admin = await emu.control.createAccount({ team: { name: 'Errors Team' }, team_admin: true });
  const grant = await emu.control.grant({ app: teamApp.key, account: admin.account_id });
  assert.ok(grant.team_id, 'a team app grant carries team_id');
  const r = await emu.rpc('files/list_folder', { path: '' }, grant.access_token);
  assert400Text(r, 'files/list_folder', /Dropbox-API-Select-User/);
  await stillAnswers();
});

test('path lookup: not_found is a 409 with the LookupError nested under its tag', async () => {
  const meta = await emu.rpc('files/get_metadata', { path: '/no/such/file.txt' }, token);
  assertJsonError(meta, 409, 'path/not_found', { '.tag': 'path', path: { '.tag': 'not_found' } });
  const list = await emu.rpc('files/list_folder', { path: '/no-such-folder' }, token);
  assertJsonError(list, 409, 'path/not_found', { '.tag': 'path', path: { '.tag': 'not_found' } });
  const del = await emu.rpc('files/delete_v2', { path: '/no-such-thing' }, token);
  assertJsonError(del, 409, 'path_lookup/not_found', { '.tag': 'path_lookup', path_lookup: { '.tag': 'not_found' } });
  const down = await emu.download('files/download', { path: '/missing.bin' }, token);
  assert.equal(down.status, 409);
  assert.equal(down.headers.get('content-type'), 'application/json');
  assert.match(down.json.error_summary, /^path\/not_found\/\.*$/);
  assert.deepEqual(down.json.error, { '.tag': 'path', path: { '.tag': 'not_found' } });
  await stillAnswers();
});

test('write conflict: 409 path/conflict/... for folders and files', async () => {
  const first = await emu.rpc('files/create_folder_v2', { path: '/Conflict' }, token);
  assert.equal(first.status, 200, first.text);
  assert.equal(first.json.metadata.name, 'Conflict');
  // Case-insensitive: /conflict is the same folder.
  const again = await emu.rpc('files/create_folder_v2', { path: '/conflict' }, token);
  assertJsonError(again, 409, 'path/conflict/folder', { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'folder' } } });

  const file = await emu.upload('files/upload', { path: '/Conflict/a.txt', mode: 'add' }, Buffer.from('one'), token);
  assert.equal(file.status, 200, file.text);
  const clash = await emu.upload('files/upload', { path: '/Conflict/a.txt', mode: 'add' }, Buffer.from('two'), token);
  assert.equal(clash.status, 409, clash.text);
  assert.equal(clash.headers.get('content-type'), 'application/json');
  // The summary goes through UploadWriteFailed.reason, as Dropbox's does: a real files/upload answer reads
  // {"error_summary": "path/insufficient_space/", "error": {".tag": "path", "reason": {".tag": "insufficient_space"}, ...}}.
  assert.match(clash.json.error_summary, /^path\/conflict\/file\/\.*$/);
  // UploadError.path carries UploadWriteFailed, a struct, flattened next to the tag (Dropbox HTTP docs: JSON, Dropbox docs: files routes).
  assert.equal(clash.json.error['.tag'], 'path');
  assert.deepEqual(clash.json.error.reason, { '.tag': 'conflict', conflict: { '.tag': 'file' } });
  assert.equal(typeof clash.json.error.upload_session_id, 'string');

  const folderOverFile = await emu.rpc('files/create_folder_v2', { path: '/Conflict/a.txt' }, token);
  assertJsonError(folderOverFile, 409, 'path/conflict/file', { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'file' } } });
  await stillAnswers();
});

test('upload offsets: incorrect_offset carries correct_offset', async () => {
  const start = await emu.upload('files/upload_session/start', { close: false }, Buffer.alloc(10, 1), token);
  assert.equal(start.status, 200, start.text);
  const sessionId: string = start.json.session_id;
  const wrong = await emu.upload('files/upload_session/append_v2', { cursor: { session_id: sessionId, offset: 3 }, close: false }, Buffer.alloc(5, 2), token);
  assertJsonError(wrong, 409, 'incorrect_offset', { '.tag': 'incorrect_offset', correct_offset: 10 });

  const finishWrong = await emu.upload(
    'files/upload_session/finish',
    { cursor: { session_id: sessionId, offset: 99 }, commit: { path: '/offsets.bin', mode: 'add' } },
    Buffer.alloc(0),
    token,
  );
  assertJsonError(finishWrong, 409, 'lookup_failed/incorrect_offset', {
    '.tag': 'lookup_failed',
    lookup_failed: { '.tag': 'incorrect_offset', correct_offset: 10 },
  });

  // The session survives a bad offset: the right offset still works.
  const ok = await emu.upload('files/upload_session/append_v2', { cursor: { session_id: sessionId, offset: 10 }, close: false }, Buffer.alloc(5, 2), token);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.headers.get('content-type'), 'application/json');
  assert.equal(ok.json, null, 'Void result is JSON null (Dropbox docs: auth/token/revoke)');
  const fin = await emu.upload(
    'files/upload_session/finish',
    { cursor: { session_id: sessionId, offset: 15 }, commit: { path: '/offsets.bin', mode: 'add' } },
    Buffer.alloc(0),
    token,
  );
  assert.equal(fin.status, 200, fin.text);
  assert.equal(fin.json.size, 15);

  const unknown = await emu.upload('files/upload_session/append_v2', { cursor: { session_id: 'AAAAAAAAAAAAAAAAAAAAAA', offset: 0 } }, Buffer.alloc(1), token);
  assertJsonError(unknown, 409, 'not_found', { '.tag': 'not_found' });
  await stillAnswers();
});

test('429 with an integer Retry-After (fault injection)', async () => {
  await emu.control.fault({ route: 'users/get_current_account', status: 429, retry_after: 7, count: 1 });
  const r = await emu.rpc('users/get_current_account', undefined, token);
  assert.equal(r.status, 429, r.text);
  assert.equal(r.headers.get('retry-after'), '7');
  // Dropbox docs: errors: either a RateLimitError JSON body or plain text.
  if ((r.headers.get('content-type') ?? '').startsWith('application/json')) {
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.match(r.json.error_summary, /^too_many_(requests|write_operations)\//);
    assert.ok(['too_many_requests', 'too_many_write_operations'].includes(r.json.error.reason['.tag']));
    assert.equal(r.json.error.retry_after, 7);
  }
  // count: 1 → the next call is served normally.
  await stillAnswers();
});

test('missing scope: 401 missing_scope with required_scope', async () => {
  const narrow = await emu.control.grant({ app: appKey, account: accountId, scopes: ['account_info.read'] });
  assert.equal(narrow.scope, 'account_info.read');
  const list = await emu.rpc('files/list_folder', { path: '' }, narrow.access_token);
  assertJsonError(list, 401, 'missing_scope', { '.tag': 'missing_scope', required_scope: 'files.metadata.read' });
  const up = await emu.upload('files/upload', { path: '/scoped.txt' }, Buffer.from('x'), narrow.access_token);
  assertJsonError(up, 401, 'missing_scope', { '.tag': 'missing_scope', required_scope: 'files.content.write' });
  const down = await emu.download('files/download', { path: '/scoped.txt' }, narrow.access_token);
  assert.equal(down.status, 401);
  assert.deepEqual(down.json?.error, { '.tag': 'missing_scope', required_scope: 'files.content.read' });
  // The granted scope still works.
  const me = await emu.rpc('users/get_current_account', undefined, narrow.access_token);
  assert.equal(me.status, 200, me.text);
  await stillAnswers();
});

test('bad input: malformed JSON, wrong Content-Type, bad Dropbox-API-Arg, unknown route, oversized body', async () => {
  const post = (path: string, init: RequestInit) => emu.fetch(`${emu.url}${path}`, { method: 'POST', ...init }).then(async (res) => {
    const text = await res.text();
    let json: unknown;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, headers: res.headers, text, json } as RawResponse;
  });
  const auth = { Authorization: `Bearer ${token}` };

  const badJson = await post('/2/files/list_folder', { headers: { ...auth, 'Content-Type': 'application/json' }, body: '{"path": ' });
  assert400Text(badJson, 'files/list_folder', /could not decode input as JSON/);

  const wrongType = await post('/2/files/list_folder', { headers: { ...auth, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'path=' });
  assert400Text(wrongType, 'files/list_folder', /Bad HTTP "Content-Type" header/);

  const wrongField = await post('/2/files/list_folder', { headers: { ...auth, 'Content-Type': 'application/json' }, body: '{"path": 5}' });
  assert400Text(wrongField, 'files/list_folder', /path/);

  const uploadJsonType = await post('/2/files/upload', {
    headers: { ...auth, 'Content-Type': 'application/json', 'Dropbox-API-Arg': '{"path":"/x.txt"}' },
    body: 'hello',
  });
  assert400Text(uploadJsonType, 'files/upload', /Bad HTTP "Content-Type" header.*application\/octet-stream/);

  const argNotJson = await post('/2/files/download', { headers: { ...auth, 'Dropbox-API-Arg': '{path: /x' } });
  assert400Text(argNotJson, 'files/download', /Dropbox-API-Arg/);

  const badEscape = await post('/2/files/upload', {
    headers: { ...auth, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': '{"path":"/a\\uZZZZ.txt"}' },
    body: 'x',
  });
  assert400Text(badEscape, 'files/upload', /Dropbox-API-Arg/);

  // Valid \uXXXX escapes (incl. a surrogate pair) decode to the real name (Dropbox HTTP docs: request styles and headers).
  const name = 'Zürich naïve ☃ 😀.txt';
  const escaped = await emu.upload('files/upload', { path: `/${name}` }, Buffer.from('unicode'), token);
  assert.equal(escaped.status, 200, escaped.text);
  assert.equal(escaped.json.name, name);
  assert.ok(headerSafeJson({ path: `/${name}` }).includes('\\ud83d\\ude00'), 'the client really sent escapes');

  const unknown = await post('/2/files/no_such_route', { headers: { ...auth, 'Content-Type': 'application/json' }, body: '{}' });
  assert.ok(unknown.status === 400 || unknown.status === 404, `unknown route: 400/404, got ${unknown.status} ${unknown.text}`);
  assert.ok(!(unknown.headers.get('content-type') ?? '').includes('html'), 'an API error, not an HTML page');

  // Dropbox docs: files routes: a single upload request must not carry more than 150 MiB → UploadError.payload_too_large.
  const tooBig = Buffer.alloc(150 * 1024 * 1024 + 1, 0x61);
  let oversized: RawResponse | undefined;
  try {
    oversized = await emu.upload('files/upload', { path: '/too-big.bin' }, tooBig, token);
  } catch (err) {
    // A server may answer and close before reading the whole body; the client then sees a reset. Accept that only
    // if the server is still up (checked below) — but report what happened.
    oversized = undefined;
    assert.ok(err instanceof Error);
  }
  if (oversized) assertJsonError(oversized, 409, 'payload_too_large', { '.tag': 'payload_too_large' });
  const gone = await emu.rpc('files/get_metadata', { path: '/too-big.bin' }, token);
  assert.equal(gone.status, 409, 'nothing was stored for the oversized upload');

  await stillAnswers();
});

test('bad input: raw bytes in Dropbox-API-Arg: invalid UTF-8 is a 400; raw UTF-8 is never mis-decoded', async () => {
  const { connect } = await import('node:net');
  const u = new URL(emu.url);
  // Raw HTTP/1.1 over a socket so the header bytes on the wire are exactly these (node:http's client may re-encode
  // a header string as UTF-8 when it writes head and body together).
  const send = (argBytes: Buffer) => new Promise<{ status: number; type: string | undefined; body: string }>((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', reject);
    sock.on('end', () => {
      // Work on bytes: chunk sizes count bytes, not characters.
      const raw = Buffer.concat(chunks);
      const sep = raw.indexOf('\r\n\r\n');
      const head = raw.subarray(0, sep).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      const type = /\r\ncontent-type: *([^\r\n]*)/i.exec(head)?.[1];
      let rest = raw.subarray(sep + 4);
      if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
        const parts: Buffer[] = [];
        for (let i = 0; ;) {
          const nl = rest.indexOf('\r\n', i);
          const len = parseInt(rest.subarray(i, nl).toString('latin1'), 16);
          if (!len) break;
          parts.push(rest.subarray(nl + 2, nl + 2 + len));
          i = nl + 2 + len + 2;
        }
        rest = Buffer.concat(parts);
      }
      const body = rest.toString('utf8');
      resolve({ status, type, body });
    });
    sock.write(Buffer.concat([
      Buffer.from(`POST /2/files/upload HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1\r\nConnection: close\r\nDropbox-API-Arg: `),
      argBytes,
      Buffer.from('\r\n\r\nx'),
    ]));
  });
  // 0xE9 alone is not UTF-8 at all: nothing can decode it correctly, so it is bad input (docs/emulator.md).
  const invalid = await send(Buffer.concat([Buffer.from('{"path":"/caf'), Buffer.from([0xe9]), Buffer.from('-latin1.txt"}')]));
  assert.equal(invalid.status, 400, `invalid UTF-8 in Dropbox-API-Arg: ${invalid.status} ${invalid.body}`);
  assert.equal(invalid.type, 'text/plain; charset=utf-8');
  assert.ok(invalid.body.startsWith('Error in call to API function "files/upload": '), invalid.body);
  // Raw (unescaped) UTF-8 breaks the header-safe rule (Dropbox HTTP docs: request styles and headers): refuse it, or decode it as UTF-8, never as latin1.
  const rawUtf8 = await send(Buffer.from('{"path":"/café-raw.txt"}', 'utf8'));
  if (rawUtf8.status === 200) {
    assert.equal(JSON.parse(rawUtf8.body).name, 'café-raw.txt', `raw UTF-8 was mis-decoded: ${rawUtf8.body}`);
  } else {
    assert.equal(rawUtf8.status, 400, rawUtf8.body);
  }
  await stillAnswers();
});

test('every API response carries X-Dropbox-Request-Id (read by the Python and Java SDKs, Dropbox HTTP docs: request styles and headers)', async () => {
  const ok = await emu.rpc('users/get_current_account', undefined, token);
  const err = await emu.rpc('files/get_metadata', { path: '/nope' }, token);
  const bad = await emu.rpc('users/get_current_account', undefined, null);
  for (const r of [ok, err, bad]) assert.match(r.headers.get('x-dropbox-request-id') ?? '', /^[0-9a-zA-Z]{8,}$/);
  assert.notEqual(ok.headers.get('x-dropbox-request-id'), err.headers.get('x-dropbox-request-id'));
});

test('authentication: an expired token is 401 expired_access_token (clock moved, no sleep)', async () => {
  const fresh = await emu.control.grant({ app: appKey, account: accountId, token_access_type: 'online' });
  assert.equal(typeof fresh.expires_in, 'number');
  await emu.control.advanceClock(fresh.expires_in! + 1);
  const r = await emu.rpc('users/get_current_account', undefined, fresh.access_token);
  assertJsonError(r, 401, 'expired_access_token', { '.tag': 'expired_access_token' });
  // Every earlier token expired too; a new grant still works: the server is healthy.
  token = (await emu.control.grant({ app: appKey, account: accountId })).access_token;
  await stillAnswers();
});
