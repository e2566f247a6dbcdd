/**
 * Files routes against the contract: https://www.dropbox.com/developers/documentation/http/documentation (wire format, request styles), Dropbox docs: files routes (routes, paths,
 * WriteMode, sessions, content_hash), docs/emulator.md (what real clients send and depend on).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEmulator, userWithToken, headerSafeJson, readRaw, type StartedEmulator } from '../helpers/emulator.js';
import { dropboxContentHash, patternBytes } from '../helpers/content-hash.js';

const MiB = 1024 * 1024;
let emu: StartedEmulator;
let token: string;
let appKey: string;
let appSecret: string;
let accountId: string;

before(async () => {
  emu = await startEmulator();
  const u = await userWithToken(emu);
  token = u.token.access_token;
  accountId = u.account.account_id;
  appKey = u.app.key;
  appSecret = u.app.secret!;
});
after(async () => {
  await emu?.close();
});

const put = async (path: string, data: Buffer | string, extra: Record<string, unknown> = {}) => {
  const r = await emu.upload('files/upload', { path, ...extra }, Buffer.from(data), token);
  return r;
};

test('no-argument RPC: no body (JS SDK) and body "null" with application/json (Python SDK) both work', async () => {
  const none = await emu.rpc('users/get_space_usage', undefined, token);
  assert.equal(none.status, 200, none.text);
  assert.equal(typeof none.json.used, 'number');
  assert.equal(none.json.allocation['.tag'], 'individual');
  const nul = await readRaw(await fetch(`${emu.url}/2/users/get_space_usage`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: 'null' }));
  assert.equal(nul.status, 200, nul.text);
  const acct = await readRaw(await fetch(`${emu.url}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: 'null' }));
  assert.equal(acct.status, 200, acct.text);
  assert.equal(acct.json.root_info['.tag'], 'user');
  assert.equal(typeof acct.json.root_info.root_namespace_id, 'string');
  assert.equal(acct.json.account_type['.tag'], 'basic');
});

test('check/user echoes; check/app takes HTTP Basic app credentials', async () => {
  const u = await emu.rpc('check/user', { query: 'ping' }, token);
  assert.equal(u.status, 200, u.text);
  assert.deepEqual(u.json, { result: 'ping' });
  const basic = `Basic ${Buffer.from(`${appKey}:${appSecret}`).toString('base64')}`;
  const a = await emu.rpc('check/app', { query: 'pong' }, null, { Authorization: basic });
  assert.equal(a.status, 200, a.text);
  assert.deepEqual(a.json, { result: 'pong' });
  const wrong = await emu.rpc('check/app', { query: 'x' }, null, { Authorization: `Basic ${Buffer.from(`${appKey}:nope`).toString('base64')}` });
  assert.ok(wrong.status === 400 || wrong.status === 401, `bad app secret refused, got ${wrong.status}`);
});

test('paths: case-insensitive, case-preserving; root and pattern rules give 400s in Dropbox wording', async () => {
  assert.equal((await put('/Docs/Report.TXT', 'v1')).status, 200);
  const meta = await emu.rpc('files/get_metadata', { path: '/docs/report.txt' }, token);
  assert.equal(meta.status, 200, meta.text);
  assert.equal(meta.json.name, 'Report.TXT');
  assert.equal(meta.json.path_lower, '/docs/report.txt');
  assert.equal(meta.json.path_display, '/Docs/Report.TXT');
  assert.match(meta.json.id, /^id:/);
  assert.match(meta.json.rev, /^[0-9a-f]{9,}$/);
  assert.match(meta.json.server_modified, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.match(meta.json.client_modified, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(meta.json.is_downloadable, true);

  const byId = await emu.rpc('files/get_metadata', { path: meta.json.id }, token);
  assert.equal(byId.status, 200, byId.text);
  assert.equal(byId.json.path_lower, '/docs/report.txt');

  const slashRoot = await emu.rpc('files/list_folder', { path: '/' }, token);
  assert.equal(slashRoot.status, 400);
  assert.match(slashRoot.text, /^Error in call to API function "files\/list_folder": request body: path: Specify the root folder as an empty string rather than as "\/"\./);
  const rootMeta = await emu.rpc('files/get_metadata', { path: '' }, token);
  assert.equal(rootMeta.status, 400);
  assert.match(rootMeta.text, /The root folder is unsupported\./);
  const relative = await emu.rpc('files/get_metadata', { path: 'test' }, token);
  assert.equal(relative.status, 400);
  assert.match(relative.text, /request body: path: 'test' did not match pattern/);
  const upRoot = await emu.upload('files/upload', { path: '' }, Buffer.from('x'), token);
  assert.equal(upRoot.status, 400);
  assert.match(upRoot.text, /^Error in call to API function "files\/upload": HTTP header "Dropbox-API-Arg": path/);
});

test('WriteMode: add, autorename, overwrite, update with rev, identical content is no conflict', async () => {
  const first = await put('/modes/document.txt', 'one');
  assert.equal(first.status, 200, first.text);
  const same = await put('/modes/document.txt', 'one');
  assert.equal(same.status, 200, `identical content is not a conflict: ${same.text}`);
  assert.equal(same.json.rev, first.json.rev, 'nothing was written');
  const renamed = await put('/modes/document.txt', 'two', { autorename: true });
  assert.equal(renamed.status, 200, renamed.text);
  assert.equal(renamed.json.name, 'document (2).txt', 'the spec example (files.stone WriteMode.add)');
  const over = await put('/modes/document.txt', 'three', { mode: 'overwrite' });
  assert.equal(over.status, 200, over.text);
  assert.notEqual(over.json.rev, first.json.rev);
  assert.equal(over.json.id, first.json.id, 'an overwrite keeps the file id');
  const stale = await put('/modes/document.txt', 'four', { mode: { '.tag': 'update', update: first.json.rev } });
  assert.equal(stale.status, 409, 'update with an old rev conflicts');
  assert.equal(stale.json.error['.tag'], 'path');
  assert.equal(stale.json.error.reason['.tag'], 'conflict');
  const fresh = await put('/modes/document.txt', 'five', { mode: { '.tag': 'update', update: over.json.rev } });
  assert.equal(fresh.status, 200, fresh.text);
  const updateAsString = await put('/modes/document.txt', 'six', { mode: 'update' });
  assert.equal(updateAsString.status, 400, 'update carries a value, so the bare string is bad input (Dropbox HTTP docs: JSON)');
});

test('list_folder: limit paging, recursive, continue reports later changes and deletions, get_latest_cursor', async () => {
  for (const n of ['a', 'b', 'c', 'd', 'e']) assert.equal((await put(`/paged/${n}.txt`, n)).status, 200);
  assert.equal((await emu.rpc('files/create_folder_v2', { path: '/paged/sub' }, token)).status, 200);
  assert.equal((await put('/paged/sub/deep.txt', 'deep')).status, 200);

  const names: string[] = [];
  let r = await emu.rpc('files/list_folder', { path: '/paged', limit: 2 }, token);
  for (let i = 0; ; i++) {
    assert.equal(r.status, 200, r.text);
    names.push(...r.json.entries.map((e: any) => `${e['.tag']}:${e.name}`));
    if (!r.json.has_more) break;
    assert.ok(i < 20);
    r = await emu.rpc('files/list_folder/continue', { cursor: r.json.cursor }, token);
  }
  assert.deepEqual(names.sort(), ['file:a.txt', 'file:b.txt', 'file:c.txt', 'file:d.txt', 'file:e.txt', 'folder:sub']);
  const cursor = r.json.cursor;

  const rec = await emu.rpc('files/list_folder', { path: '/paged', recursive: true }, token);
  assert.ok(rec.json.entries.some((e: any) => e.path_lower === '/paged/sub/deep.txt'), 'recursive includes nested files');

  const latest = await emu.rpc('files/list_folder/get_latest_cursor', { path: '/paged' }, token);
  assert.equal(latest.status, 200, latest.text);
  assert.equal(typeof latest.json.cursor, 'string');

  assert.equal((await put('/paged/f.txt', 'f')).status, 200);
  assert.equal((await emu.rpc('files/delete_v2', { path: '/paged/a.txt' }, token)).status, 200);
  for (const c of [cursor, latest.json.cursor]) {
    const changes = await emu.rpc('files/list_folder/continue', { cursor: c }, token);
    assert.equal(changes.status, 200, changes.text);
    const got = changes.json.entries.map((e: any) => `${e['.tag']}:${e.name}`).sort();
    assert.deepEqual(got, ['deleted:a.txt', 'file:f.txt']);
    assert.equal(changes.json.has_more, false);
  }
  const badCursor = await emu.rpc('files/list_folder/continue', { cursor: 'bogus-cursor' }, token);
  assert.ok(badCursor.status === 400 || badCursor.status === 409, `a bad cursor is refused, got ${badCursor.status}`);
});

test('move_v2, copy_v2, delete_v2 and their errors', async () => {
  assert.equal((await put('/reloc/src.txt', 'move me')).status, 200);
  const copy = await emu.rpc('files/copy_v2', { from_path: '/reloc/src.txt', to_path: '/reloc/copy.txt' }, token);
  assert.equal(copy.status, 200, copy.text);
  assert.equal(copy.json.metadata['.tag'], 'file');
  assert.equal(copy.json.metadata.name, 'copy.txt');
  const move = await emu.rpc('files/move_v2', { from_path: '/reloc/src.txt', to_path: '/reloc/Moved.txt' }, token);
  assert.equal(move.status, 200, move.text);
  assert.equal(move.json.metadata.path_display, '/reloc/Moved.txt');
  const gone = await emu.rpc('files/get_metadata', { path: '/reloc/src.txt' }, token);
  assert.equal(gone.status, 409);
  assert.deepEqual(gone.json.error, { '.tag': 'path', path: { '.tag': 'not_found' } }, 'the moved-away path is gone');
  const missing = await emu.rpc('files/move_v2', { from_path: '/reloc/nope.txt', to_path: '/reloc/x.txt' }, token);
  assert.equal(missing.status, 409);
  assert.match(missing.json.error_summary, /^from_lookup\/not_found\//);
  assert.deepEqual(missing.json.error, { '.tag': 'from_lookup', from_lookup: { '.tag': 'not_found' } });
  const clash = await emu.rpc('files/copy_v2', { from_path: '/reloc/copy.txt', to_path: '/reloc/moved.txt' }, token);
  assert.equal(clash.status, 409);
  assert.match(clash.json.error_summary, /^to\/conflict\/file\/\.*$/);
  assert.deepEqual(clash.json.error, { '.tag': 'to', to: { '.tag': 'conflict', conflict: { '.tag': 'file' } } });
  assert.equal((await emu.rpc('files/create_folder_v2', { path: '/reloc/dir' }, token)).status, 200);
  const intoItself = await emu.rpc('files/move_v2', { from_path: '/reloc/dir', to_path: '/reloc/dir/inner' }, token);
  assert.equal(intoItself.status, 409);
  assert.equal(intoItself.json.error['.tag'], 'cant_move_folder_into_itself');
  const del = await emu.rpc('files/delete_v2', { path: '/reloc/Moved.txt' }, token);
  assert.equal(del.status, 200, del.text);
  assert.equal(del.json.metadata['.tag'], 'file');
  assert.equal(del.json.metadata.name, 'Moved.txt');
  const deleted = await emu.rpc('files/get_metadata', { path: '/reloc/moved.txt', include_deleted: true }, token);
  assert.equal(deleted.status, 200, deleted.text);
  assert.equal(deleted.json['.tag'], 'deleted');
});

test('download: POST and GET, Range → 206 + Content-Range, header-safe Dropbox-API-Result', async () => {
  const data = patternBytes(100_000, 5);
  const name = 'Grüße ☃.bin';
  assert.equal((await put(`/dl/${name}`, data)).status, 200);
  const post = await emu.download('files/download', { path: `/dl/${name}` }, token);
  assert.equal(post.status, 200);
  assert.equal(post.headers.get('content-type'), 'application/octet-stream');
  const raw = post.headers.get('dropbox-api-result')!;
  assert.ok(/^[\x20-\x7e]*$/.test(raw), 'Dropbox-API-Result is ASCII (non-ASCII escaped as \\uXXXX)');
  assert.equal(JSON.parse(raw).name, name);
  assert.ok(post.bytes.equals(data));

  // GET with the argument in the query string (?arg=) and the token in ?authorization= (Dropbox HTTP docs: request styles and headers CORS mode).
  const q = new URLSearchParams({ arg: JSON.stringify({ path: `/dl/${name}` }), authorization: `Bearer ${token}` });
  const get = await fetch(`${emu.url}/2/files/download?${q}`);
  assert.equal(get.status, 200);
  assert.ok(Buffer.from(await get.arrayBuffer()).equals(data));

  const ranged = await fetch(`${emu.url}/2/files/download`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Dropbox-API-Arg': headerSafeJson({ path: `/dl/${name}` }), Range: 'bytes=10-19' },
  });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers.get('content-range'), `bytes 10-19/${data.length}`);
  assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(10, 20)));

  const suffix = await fetch(`${emu.url}/2/files/download`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Dropbox-API-Arg': headerSafeJson({ path: `/dl/${name}` }), Range: 'bytes=-5' },
  });
  assert.equal(suffix.status, 206);
  assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(data.subarray(data.length - 5)));

  const folder = await emu.download('files/download', { path: '/dl' }, token);
  assert.equal(folder.status, 409);
  assert.match(folder.json.error_summary, /^path\/not_file\//);
});

test('uploads accept text/plain; charset=dropbox-cors-hack and ?arg=', async () => {
  const q = new URLSearchParams({ arg: JSON.stringify({ path: '/cors/hack.txt' }) });
  const r = await readRaw(await fetch(`${emu.url}/2/files/upload?${q}`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/plain; charset=dropbox-cors-hack' }, body: 'cors' }));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.size, 4);
});

test('batch sessions: start_batch, append with close, finish_batch_v2; unclosed session fails per entry', async () => {
  const start = await emu.rpc('files/upload_session/start_batch', { num_sessions: 2 }, token);
  assert.equal(start.status, 200, start.text);
  const [s1, s2] = start.json.session_ids as string[];
  assert.ok(s1 && s2 && s1 !== s2);
  const d1 = patternBytes(1000, 1);
  const d2 = patternBytes(2000, 2);
  assert.equal((await emu.upload('files/upload_session/append_v2', { cursor: { session_id: s1, offset: 0 }, close: true }, d1, token)).status, 200);
  assert.equal((await emu.upload('files/upload_session/append_v2', { cursor: { session_id: s2, offset: 0 }, close: false }, d2, token)).status, 200);
  const fin = await emu.rpc('files/upload_session/finish_batch_v2', {
    entries: [
      { cursor: { session_id: s1, offset: d1.length }, commit: { path: '/batch/one.bin' } },
      { cursor: { session_id: s2, offset: d2.length }, commit: { path: '/batch/two.bin' } },
    ],
  }, token);
  assert.equal(fin.status, 200, fin.text);
  const [e1, e2] = fin.json.entries;
  assert.equal(e1['.tag'], 'success');
  assert.equal(e1.content_hash, dropboxContentHash(d1));
  assert.equal(e1.name, 'one.bin');
  assert.equal(e2['.tag'], 'failure');
  assert.deepEqual(e2.failure, { '.tag': 'lookup_failed', lookup_failed: { '.tag': 'not_closed' } });
});

test('concurrent sessions: 4 MiB-aligned appends in any order, then finish', async () => {
  const data = patternBytes(8 * MiB + 100, 77);
  const start = await emu.upload('files/upload_session/start', { session_type: { '.tag': 'concurrent' } }, Buffer.alloc(0), token);
  assert.equal(start.status, 200, start.text);
  const sid = start.json.session_id;
  const bad = await emu.upload('files/upload_session/append_v2', { cursor: { session_id: sid, offset: 100 } }, data.subarray(0, 4 * MiB), token);
  assert.equal(bad.status, 409);
  assert.equal(bad.json.error['.tag'], 'concurrent_session_invalid_offset');
  // Out of order: the last (short, closing) chunk first.
  const parts = [
    emu.upload('files/upload_session/append_v2', { cursor: { session_id: sid, offset: 8 * MiB }, close: true }, data.subarray(8 * MiB), token),
    emu.upload('files/upload_session/append_v2', { cursor: { session_id: sid, offset: 4 * MiB } }, data.subarray(4 * MiB, 8 * MiB), token),
    emu.upload('files/upload_session/append_v2', { cursor: { session_id: sid, offset: 0 } }, data.subarray(0, 4 * MiB), token),
  ];
  for (const p of await Promise.all(parts)) assert.equal(p.status, 200, p.text);
  const fin = await emu.upload('files/upload_session/finish', { cursor: { session_id: sid, offset: data.length }, commit: { path: '/concurrent.bin' } }, Buffer.alloc(0), token);
  assert.equal(fin.status, 200, fin.text);
  assert.equal(fin.json.size, data.length);
  assert.equal(fin.json.content_hash, dropboxContentHash(data));
});

test('an app-folder app sees only its folder', async () => {
  const folderApp = await emu.control.createApp({ name: 'Folder Bound', access: 'app_folder' });
  const acct = await emu.control.createAccount();
  const full = await emu.control.createApp({ name: 'Full Access' });
  const folderTok = (await emu.control.grant({ app: folderApp.key, account: acct.account_id })).access_token;
  const fullTok = (await emu.control.grant({ app: full.key, account: acct.account_id })).access_token;
  assert.equal((await emu.upload('files/upload', { path: '/outside.txt' }, Buffer.from('full'), fullTok)).status, 200);
  const up = await emu.upload('files/upload', { path: '/inside.txt' }, Buffer.from('app'), folderTok);
  assert.equal(up.status, 200, up.text);
  assert.equal(up.json.path_lower, '/inside.txt', 'paths are relative to the app folder');
  const list = await emu.rpc('files/list_folder', { path: '' }, folderTok);
  assert.deepEqual(list.json.entries.map((e: any) => e.name), ['inside.txt']);
  const outside = await emu.rpc('files/get_metadata', { path: '/outside.txt' }, folderTok);
  assert.equal(outside.status, 409);
  const fullList = await emu.rpc('files/list_folder', { path: '', recursive: true }, fullTok);
  const paths = fullList.json.entries.map((e: any) => e.path_lower as string);
  assert.ok(paths.includes('/outside.txt'));
  assert.ok(paths.some((p: string) => p.startsWith('/apps/') && p.endsWith('/inside.txt')), `the app folder lives under /Apps: ${paths.join(', ')}`);
});

test('longpoll (notify host, no auth): waits until a change, then answers changes: true', async () => {
  assert.equal((await put('/poll/seed.txt', 'seed')).status, 200);
  const latest = await emu.rpc('files/list_folder/get_latest_cursor', { path: '/poll' }, token);
  const cursor = latest.json.cursor;
  // No Authorization header: longpoll is `noauth` (Dropbox docs: files routes); the cursor identifies the folder.
  const waiting = fetch(`${emu.url}/2/files/list_folder/longpoll`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ cursor, timeout: 30 }) });
  // The change that wakes it (waiting on the event, not on a timer).
  assert.equal((await put('/poll/new.txt', 'new')).status, 200);
  const t0 = performance.now();
  const woke = await readRaw(await waiting);
  assert.equal(woke.status, 200, woke.text);
  assert.equal(woke.headers.get('content-type'), 'application/json');
  assert.equal(woke.json.changes, true);
  assert.ok(performance.now() - t0 < 10_000, 'answered on the change, not at the 30 s timeout');
  const bad = await readRaw(await fetch(`${emu.url}/2/files/list_folder/longpoll`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ cursor: 'nonsense' }) }));
  assert.equal(bad.status, 409, bad.text);
  assert.equal(bad.json.error['.tag'], 'reset');
});

test('Dropbox-API-Path-Root: home and the own root work; a wrong root is 422 invalid_root', async () => {
  const me = await emu.rpc('users/get_current_account', undefined, token);
  const rootNs: string = me.json.root_info.root_namespace_id;
  assert.equal((await put('/rooted.txt', 'r')).status, 200);
  const home = await emu.rpc('files/get_metadata', { path: '/rooted.txt' }, token, { 'Dropbox-API-Path-Root': JSON.stringify({ '.tag': 'home' }) });
  assert.equal(home.status, 200, home.text);
  const own = await emu.rpc('files/get_metadata', { path: '/rooted.txt' }, token, { 'Dropbox-API-Path-Root': JSON.stringify({ '.tag': 'root', root: rootNs }) });
  assert.equal(own.status, 200, own.text);
  const wrong = await emu.rpc('files/get_metadata', { path: '/rooted.txt' }, token, { 'Dropbox-API-Path-Root': JSON.stringify({ '.tag': 'root', root: '999999999' }) });
  assert.equal(wrong.status, 422, wrong.text);
  assert.equal(wrong.headers.get('content-type'), 'application/json');
  assert.equal(wrong.json.error['.tag'], 'invalid_root');
  assert.equal(wrong.json.error.invalid_root.root_namespace_id, rootNs, 'invalid_root carries the current RootInfo');
  const nsPath = await emu.rpc('files/get_metadata', { path: `ns:${rootNs}/rooted.txt` }, token);
  assert.equal(nsPath.status, 200, `ns:<id>/path addresses the namespace: ${nsPath.text}`);
});

test('content_hash arguments are verified: upload and append_v2 refuse a mismatch', async () => {
  const data = Buffer.from('checked bytes');
  const wrongHash = dropboxContentHash(Buffer.from('other bytes'));
  const up = await emu.upload('files/upload', { path: '/hashed/a.txt', content_hash: wrongHash }, data, token);
  assert.equal(up.status, 409, up.text);
  assert.match(up.json.error_summary, /^content_hash_mismatch\//);
  assert.deepEqual(up.json.error, { '.tag': 'content_hash_mismatch' });
  const ok = await emu.upload('files/upload', { path: '/hashed/a.txt', content_hash: dropboxContentHash(data) }, data, token);
  assert.equal(ok.status, 200, ok.text);

  const start = await emu.upload('files/upload_session/start', {}, Buffer.alloc(0), token);
  const sid = start.json.session_id;
  const app = await emu.upload('files/upload_session/append_v2', { cursor: { session_id: sid, offset: 0 }, content_hash: wrongHash }, data, token);
  assert.equal(app.status, 409, app.text);
  assert.equal(app.json.error['.tag'], 'content_hash_mismatch');
});

test('session lookup errors: closed, not_found after finish, expiry after 7 days of emulator time', async () => {
  const closed = await emu.upload('files/upload_session/start', { close: true }, Buffer.from('abc'), token);
  assert.equal(closed.status, 200, closed.text);
  const more = await emu.upload('files/upload_session/append_v2', { cursor: { session_id: closed.json.session_id, offset: 3 } }, Buffer.from('d'), token);
  assert.equal(more.status, 409, more.text);
  assert.deepEqual(more.json.error, { '.tag': 'closed' });
  const fin = await emu.upload('files/upload_session/finish', { cursor: { session_id: closed.json.session_id, offset: 3 }, commit: { path: '/sessions/closed.txt' } }, Buffer.alloc(0), token);
  assert.equal(fin.status, 200, fin.text);
  const again = await emu.upload('files/upload_session/finish', { cursor: { session_id: closed.json.session_id, offset: 3 }, commit: { path: '/sessions/closed2.txt' } }, Buffer.alloc(0), token);
  assert.equal(again.status, 409, 'a finished session is gone');
  assert.deepEqual(again.json.error, { '.tag': 'lookup_failed', lookup_failed: { '.tag': 'not_found' } });

  // Dropbox docs: files routes: sessions expire after 7 days. Move the clock, then use a fresh token (the old one expired too).
  const open = await emu.upload('files/upload_session/start', {}, Buffer.from('x'), token);
  await emu.control.advanceClock(7 * 24 * 3600 + 60);
  token = (await emu.control.grant({ app: appKey, account: accountId })).access_token;
  const late = await emu.upload('files/upload_session/append_v2', { cursor: { session_id: open.json.session_id, offset: 1 } }, Buffer.from('y'), token);
  assert.equal(late.status, 409, late.text);
  assert.deepEqual(late.json.error, { '.tag': 'not_found' });
});


test('lookup variants: not_folder, not_file, rev: paths, space usage counts bytes', async () => {
  const up = await put('/variants/file.txt', '12345');
  assert.equal(up.status, 200, up.text);
  const lf = await emu.rpc('files/list_folder', { path: '/variants/file.txt' }, token);
  assert.equal(lf.status, 409);
  assert.deepEqual(lf.json.error, { '.tag': 'path', path: { '.tag': 'not_folder' } });
  const byRev = await emu.rpc('files/get_metadata', { path: `rev:${up.json.rev}` }, token);
  assert.equal(byRev.status, 200, byRev.text);
  assert.equal(byRev.json.rev, up.json.rev);
  const usage = await emu.rpc('users/get_space_usage', undefined, token);
  assert.ok(usage.json.used >= 5, `used counts stored bytes: ${usage.text}`);
  assert.ok(usage.json.allocation.allocated > usage.json.used);
});
