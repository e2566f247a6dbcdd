import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { BadInputError } from '../route-module.js';
import { Harness, T0 } from './harness.test-support.js';

/** Independent content hash for small inputs (< 4 MiB: one block). */
const oneBlockHash = (data: string) =>
  createHash('sha256').update(createHash('sha256').update(data).digest()).digest('hex');

const badInput = (reason: string | RegExp) => (e: unknown) => {
  assert.ok(e instanceof BadInputError, `expected BadInputError, got ${String(e)}`);
  if (typeof reason === 'string') assert.equal(e.reason, reason);
  else assert.match(e.reason, reason);
  return true;
};

describe('paths', () => {
  test('root forms and patterns get Dropbox 400 texts', async () => {
    const h = new Harness();
    await assert.rejects(h.call('files/list_folder', { path: '/' }), badInput('request body: path: Specify the root folder as an empty string rather than as "/".'));
    await assert.rejects(h.call('files/get_metadata', { path: '' }), badInput('request body: path: The root folder is unsupported.'));
    await assert.rejects(h.call('files/create_folder_v2', { path: '/' }), badInput('request body: path: The root folder is unsupported.'));
    await assert.rejects(h.upload('/', 'x'), badInput('HTTP header "Dropbox-API-Arg": path: The root folder is unsupported.'));
    await assert.rejects(
      h.call('files/list_folder', { path: 'test' }),
      badInput(`request body: path: 'test' did not match pattern '(/(.|[\\r\\n])*)?|id:.*|(ns:[0-9]+(/(.|[\\r\\n])*)?)'`),
    );
    await assert.rejects(h.call('files/get_metadata', {}), badInput("request body: missing required field 'path'"));
    await assert.rejects(h.call('files/get_metadata', { path: 5 }), badInput("request body: path: '5' expected to be a string, got integer"));
    await assert.rejects(h.call('files/list_folder', { path: '', recursive: 'yes' }), badInput("request body: recursive: 'yes' is not a valid boolean"));
    await assert.rejects(h.call('files/list_folder', { path: '', limit: 0 }), badInput('request body: limit: 0 is not within range [1, 2000]'));
    await assert.rejects(h.call('files/list_folder', null), badInput('request body: expected object, got null'));
  });

  test('malformed and disallowed names are 409s', async () => {
    const h = new Harness();
    assert.deepEqual(await h.fail('files/get_metadata', { path: '/a//b' }), { '.tag': 'path', path: { '.tag': 'malformed_path' } });
    assert.deepEqual(await h.fail('files/get_metadata', { path: '/a/' }), { '.tag': 'path', path: { '.tag': 'malformed_path' } });
    assert.deepEqual(await h.fail('files/create_folder_v2', { path: '/a/../b' }), { '.tag': 'path', path: { '.tag': 'malformed_path' } });
    assert.deepEqual(await h.fail('files/create_folder_v2', { path: '/desktop.ini' }), { '.tag': 'path', path: { '.tag': 'disallowed_name' } });
    const upload = await h.fail('files/upload', { path: '/x/Thumbs.db' }, { body: Buffer.from('x') });
    assert.deepEqual(Object.keys(upload), ['.tag', 'reason', 'upload_session_id']);
    assert.equal(upload['.tag'], 'path');
    assert.deepEqual(upload.reason, { '.tag': 'disallowed_name' });
  });

  test('case-insensitive, case-preserving; id: and ns: forms', async () => {
    const h = new Harness();
    const folder = await h.call('files/create_folder_v2', { path: '/Homework/Math' });
    assert.equal(folder.metadata.path_display, '/Homework/Math');
    assert.equal(folder.metadata.path_lower, '/homework/math');
    assert.equal(folder.metadata['.tag'], undefined, 'FolderMetadata in CreateFolderResult carries no .tag');
    const file = await h.upload('/HOMEWORK/math/Prime_Numbers.txt', 'primes');
    // Existing ancestors keep their case; the new component keeps the caller's.
    assert.equal(file.path_display, '/Homework/Math/Prime_Numbers.txt');
    assert.equal(file.name, 'Prime_Numbers.txt');
    const meta = await h.call('files/get_metadata', { path: '/homework/MATH/prime_numbers.TXT' });
    assert.equal(meta['.tag'], 'file');
    assert.equal(meta.id, file.id);
    const byId = await h.call('files/get_metadata', { path: folder.metadata.id });
    assert.equal(byId.path_display, '/Homework/Math');
    const relative = await h.call('files/get_metadata', { path: `${folder.metadata.id}/prime_numbers.txt` });
    assert.equal(relative.id, file.id);
    const ns = await h.call('files/get_metadata', { path: 'ns:1001/Homework' });
    assert.equal(ns.name, 'Homework');
    assert.deepEqual(await h.fail('files/get_metadata', { path: 'ns:999/Homework' }), { '.tag': 'path', path: { '.tag': 'not_found' } });
    assert.deepEqual(await h.fail('files/get_metadata', { path: 'id:nope' }), { '.tag': 'path', path: { '.tag': 'not_found' } });
  });
});

describe('metadata and writes', () => {
  test('FileMetadata has every field in Dropbox formats', async () => {
    const h = new Harness();
    const m = await h.upload('/a.txt', 'hello', { client_modified: '2015-05-12T15:50:38Z' });
    assert.deepEqual(Object.keys(m), ['name', 'path_lower', 'path_display', 'id', 'client_modified', 'server_modified', 'rev', 'size', 'is_downloadable', 'content_hash']);
    assert.match(m.id, /^id:[A-Za-z0-9_-]{22}$/);
    assert.match(m.rev, /^[0-9a-f]{9,}$/);
    assert.equal(m.client_modified, '2015-05-12T15:50:38Z');
    assert.equal(m.server_modified, new Date(T0).toISOString().replace('.000Z', 'Z'));
    assert.equal(m.size, 5);
    assert.equal(m.is_downloadable, true);
    assert.equal(m.content_hash, oneBlockHash('hello'));
    await assert.rejects(h.upload('/b.txt', 'x', { client_modified: '2015-05-12 15:50' }), badInput(/client_modified: '2015-05-12 15:50' does not match format/));
  });

  test('write modes: add, overwrite, update, identical no-op, strict_conflict', async () => {
    const h = new Harness();
    const v1 = await h.upload('/doc.txt', 'one');
    const add = await h.fail('files/upload', { path: '/doc.txt' }, { body: Buffer.from('two') });
    assert.equal(add['.tag'], 'path');
    assert.deepEqual(add.reason, { '.tag': 'conflict', conflict: { '.tag': 'file' } });
    assert.match(add.upload_session_id, /^pid_upload_session:/);
    // Identical content: nothing written, no conflict, same rev.
    const same = await h.upload('/doc.txt', 'one');
    assert.equal(same.rev, v1.rev);
    const strict = await h.fail('files/upload', { path: '/doc.txt', strict_conflict: true }, { body: Buffer.from('one') });
    assert.deepEqual(strict.reason, { '.tag': 'conflict', conflict: { '.tag': 'file' } });
    h.clock += 1000;
    const v2 = await h.upload('/DOC.txt', 'two', { mode: 'overwrite' });
    assert.equal(v2.id, v1.id);
    assert.notEqual(v2.rev, v1.rev);
    assert.equal(v2.path_display, '/doc.txt', 'overwrite keeps the existing name');
    const stale = await h.fail('files/upload', { path: '/doc.txt', mode: { '.tag': 'update', update: v1.rev } }, { body: Buffer.from('three') });
    assert.deepEqual(stale.reason, { '.tag': 'conflict', conflict: { '.tag': 'file' } });
    const v3 = await h.upload('/doc.txt', 'three', { mode: { '.tag': 'update', update: v2.rev } });
    assert.equal(v3.size, 5);
    await assert.rejects(h.upload('/doc.txt', 'x', { mode: 'update' }), badInput(/mode: tag 'update' requires a value/));
    await assert.rejects(h.upload('/doc.txt', 'x', { mode: 'replace' }), badInput(/mode: unknown tag 'replace'/));
    // Old revisions stay readable by rev.
    const old = await h.download(`rev:${v1.rev}`);
    assert.equal(old.bytes.toString(), 'one');
  });

  test('autorename: numbers for add/overwrite, conflicted copy for update, folders too', async () => {
    const h = new Harness();
    const first = await h.upload('/document.txt', 'a');
    assert.equal((await h.upload('/document.txt', 'b', { autorename: true })).name, 'document (2).txt');
    assert.equal((await h.upload('/document.txt', 'c', { autorename: true })).name, 'document (3).txt');
    await h.upload('/document.txt', 'd', { mode: 'overwrite' });
    const conflicted = await h.upload('/document.txt', 'e', { mode: { '.tag': 'update', update: first.rev }, autorename: true });
    assert.equal(conflicted.name, 'document (conflicted copy).txt');
    await h.call('files/create_folder_v2', { path: '/Folder.v1' });
    const f2 = await h.call('files/create_folder_v2', { path: '/folder.v1', autorename: true });
    assert.equal(f2.metadata.name, 'Folder.v1 (2)');
    assert.deepEqual(await h.fail('files/create_folder_v2', { path: '/folder.V1' }), { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'folder' } } });
  });

  test('conflicts: folder in the way, file ancestor; parents are created', async () => {
    const h = new Harness();
    await h.call('files/create_folder_v2', { path: '/dir' });
    const folderInWay = await h.fail('files/upload', { path: '/dir' }, { body: Buffer.from('x') });
    assert.deepEqual(folderInWay.reason, { '.tag': 'conflict', conflict: { '.tag': 'folder' } });
    await h.upload('/file', 'x');
    const ancestor = await h.fail('files/upload', { path: '/file/child.txt' }, { body: Buffer.from('x') });
    assert.deepEqual(ancestor.reason, { '.tag': 'conflict', conflict: { '.tag': 'file_ancestor' } });
    assert.deepEqual(await h.fail('files/create_folder_v2', { path: '/file' }), { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'file' } } });
    await h.upload('/deep/er/x.txt', 'x');
    assert.equal((await h.call('files/get_metadata', { path: '/deep/er' }))['.tag'], 'folder');
  });

  test('a conflicting upload keeps its bytes in a session the client can finish elsewhere', async () => {
    const h = new Harness();
    await h.upload('/taken.txt', 'old');
    const err = await h.fail('files/upload', { path: '/taken.txt' }, { body: Buffer.from('new bytes') });
    assert.match(err.upload_session_id, /^pid_upload_session:/);
    const m = await h.call('files/upload_session/finish', {
      cursor: { session_id: err.upload_session_id, offset: 9 },
      commit: { path: '/other.txt' },
    });
    assert.equal(m.size, 9);
    assert.equal((await h.download('/other.txt')).bytes.toString(), 'new bytes');
  });

  test('a malformed upload path fails after the body arrived, keeping it in a session', async () => {
    const h = new Harness();
    const err = await h.fail('files/upload', { path: '/bad//name.txt' }, { body: Buffer.from('kept') });
    assert.equal(err['.tag'], 'path');
    assert.deepEqual(err.reason, { '.tag': 'malformed_path' });
    const m = await h.call('files/upload_session/finish', { cursor: { session_id: err.upload_session_id, offset: 4 }, commit: { path: '/good.txt' } });
    assert.equal(m.size, 4);
  });

  test('content_hash argument is verified', async () => {
    const h = new Harness();
    assert.deepEqual(await h.fail('files/upload', { path: '/h.txt', content_hash: '0'.repeat(64) }, { body: Buffer.from('abc') }), { '.tag': 'content_hash_mismatch' });
    const ok = await h.upload('/h.txt', 'abc', { content_hash: oneBlockHash('abc') });
    assert.equal(ok.content_hash, oneBlockHash('abc'));
    await assert.rejects(h.upload('/h.txt', 'abc', { content_hash: 'abc' }), badInput(/content_hash: 'abc' must be at least 64 characters, got 3/));
  });
});

describe('delete, move, copy', () => {
  test('delete is recursive and returns tagged metadata; parent_rev guards', async () => {
    const h = new Harness();
    const f = await h.upload('/d/x.txt', 'x');
    await h.upload('/d/sub/y.txt', 'y');
    assert.deepEqual(await h.fail('files/delete_v2', { path: '/nope' }), { '.tag': 'path_lookup', path_lookup: { '.tag': 'not_found' } });
    assert.deepEqual(await h.fail('files/delete_v2', { path: '/d/x.txt', parent_rev: '0123456789' }), {
      '.tag': 'path_write',
      path_write: { '.tag': 'conflict', conflict: { '.tag': 'file' } },
    });
    const gone = await h.call('files/delete_v2', { path: '/d/X.txt', parent_rev: f.rev });
    assert.equal(gone.metadata['.tag'], 'file');
    const dir = await h.call('files/delete_v2', { path: '/D' });
    assert.deepEqual(Object.keys(dir.metadata), ['.tag', 'name', 'path_lower', 'path_display', 'id']);
    assert.deepEqual(await h.fail('files/get_metadata', { path: '/d/sub/y.txt' }), { '.tag': 'path', path: { '.tag': 'not_found' } });
    const deleted = await h.call('files/get_metadata', { path: '/d/sub', include_deleted: true });
    assert.deepEqual(deleted, { '.tag': 'deleted', name: 'sub', path_lower: '/d/sub', path_display: '/d/sub' });
  });

  test('move keeps ids, copy makes new ones; error unions', async () => {
    const h = new Harness();
    const a = await h.upload('/src/a.txt', 'aaa');
    const src = await h.call('files/get_metadata', { path: '/src' });
    const moved = await h.call('files/move_v2', { from_path: '/src', to_path: '/Dest/Moved' });
    assert.equal(moved.metadata['.tag'], 'folder');
    assert.equal(moved.metadata.id, src.id);
    assert.equal(moved.metadata.path_display, '/Dest/Moved');
    const inside = await h.call('files/get_metadata', { path: '/dest/moved/a.txt' });
    assert.equal(inside.id, a.id);
    assert.deepEqual(await h.fail('files/get_metadata', { path: '/src' }), { '.tag': 'path', path: { '.tag': 'not_found' } });

    const copy = await h.call('files/copy_v2', { from_path: '/dest/moved/a.txt', to_path: '/copy.txt' });
    assert.notEqual(copy.metadata.id, a.id);
    assert.equal(copy.metadata.content_hash, a.content_hash);
    assert.equal((await h.download('/copy.txt')).bytes.toString(), 'aaa');

    assert.deepEqual(await h.fail('files/move_v2', { from_path: '/nope', to_path: '/x' }), { '.tag': 'from_lookup', from_lookup: { '.tag': 'not_found' } });
    assert.deepEqual(await h.fail('files/move_v2', { from_path: '/dest', to_path: '/dest/moved/inner' }), { '.tag': 'cant_move_folder_into_itself' });
    assert.deepEqual(await h.fail('files/copy_v2', { from_path: '/copy.txt', to_path: '/dest/moved/a.txt' }), {
      '.tag': 'to',
      to: { '.tag': 'conflict', conflict: { '.tag': 'file' } },
    });
    assert.deepEqual(await h.fail('files/copy_v2', { from_path: '/copy.txt', to_path: '/copy.txt/x' }), {
      '.tag': 'to',
      to: { '.tag': 'conflict', conflict: { '.tag': 'file_ancestor' } },
    });
    assert.deepEqual(await h.fail('files/move_v2', { from_path: '/a//b', to_path: '/x' }), { '.tag': 'from_lookup', from_lookup: { '.tag': 'malformed_path' } });
    const renamed = await h.call('files/copy_v2', { from_path: '/copy.txt', to_path: '/dest/moved/a.txt', autorename: true });
    assert.equal(renamed.metadata.name, 'a (2).txt');
  });
});

describe('listing and cursors', () => {
  test('list_folder: direct children, recursive with the folder itself, paging, not_folder', async () => {
    const h = new Harness();
    await h.upload('/p/one.txt', '1');
    await h.upload('/p/two.txt', '2');
    await h.upload('/p/q/three.txt', '3');
    const flat = await h.call('files/list_folder', { path: '/p' });
    assert.deepEqual(flat.entries.map((e: any) => e.path_display).sort(), ['/p/one.txt', '/p/q', '/p/two.txt']);
    assert.equal(flat.has_more, false);
    const rec = await h.call('files/list_folder', { path: '/P', recursive: true });
    assert.deepEqual(rec.entries.map((e: any) => e.path_lower), ['/p', '/p/one.txt', '/p/q', '/p/q/three.txt', '/p/two.txt']);
    const root = await h.call('files/list_folder', { path: '', recursive: true });
    assert.equal(root.entries.length, 5);
    // Paging with limit.
    const seen: string[] = [];
    let page = await h.call('files/list_folder', { path: '', recursive: true, limit: 2 });
    seen.push(...page.entries.map((e: any) => e.path_lower));
    while (page.has_more) {
      assert.equal(page.entries.length, 2);
      page = await h.call('files/list_folder/continue', { cursor: page.cursor });
      seen.push(...page.entries.map((e: any) => e.path_lower));
    }
    assert.deepEqual(seen, root.entries.map((e: any) => e.path_lower));
    assert.deepEqual(await h.fail('files/list_folder', { path: '/p/one.txt' }), { '.tag': 'path', path: { '.tag': 'not_folder' } });
    assert.deepEqual(await h.fail('files/list_folder', { path: '/missing' }), { '.tag': 'path', path: { '.tag': 'not_found' } });
  });

  test('continue returns later changes, deleted entries included; scope respected', async () => {
    const h = new Harness();
    await h.upload('/w/keep.txt', 'k');
    await h.upload('/w/old.txt', 'o');
    await h.upload('/elsewhere.txt', 'e');
    const first = await h.call('files/list_folder', { path: '/w' });
    const latest = await h.call('files/list_folder/get_latest_cursor', { path: '/w' });
    const none = await h.call('files/list_folder/continue', { cursor: first.cursor });
    assert.deepEqual(none.entries, []);
    await h.upload('/w/new.txt', 'n');
    await h.call('files/delete_v2', { path: '/w/old.txt' });
    await h.upload('/outside.txt', 'x');
    await h.upload('/w/deeper/x.txt', 'x');
    for (const cursor of [first.cursor, latest.cursor]) {
      const next = await h.call('files/list_folder/continue', { cursor });
      const summary = next.entries.map((e: any) => `${e['.tag']}:${e.path_lower}`).sort();
      assert.deepEqual(summary, ['deleted:/w/old.txt', 'file:/w/new.txt', 'folder:/w/deeper']);
      assert.equal(next.has_more, false);
      const after = await h.call('files/list_folder/continue', { cursor: next.cursor });
      assert.deepEqual(after.entries, []);
    }
    const withDeleted = await h.call('files/list_folder', { path: '/w', include_deleted: true });
    assert.ok(withDeleted.entries.some((e: any) => e['.tag'] === 'deleted' && e.path_lower === '/w/old.txt'));
  });

  test('a cursor older than the retained change log resets', async () => {
    const h = new Harness();
    const { cursor } = await h.call('files/list_folder/get_latest_cursor', { path: '' });
    for (let i = 0; i < 10_001; i++) await h.call('files/create_folder_v2', { path: `/f${i}` });
    assert.deepEqual(await h.fail('files/list_folder/continue', { cursor }), { '.tag': 'reset' });
  });

  test('bad or stale cursors reset', async () => {
    const h = new Harness();
    assert.deepEqual(await h.fail('files/list_folder/continue', { cursor: 'garbage' }), { '.tag': 'reset' });
    const { cursor } = await h.call('files/list_folder/get_latest_cursor', { path: '' });
    await h.module.reset();
    assert.deepEqual(await h.fail('files/list_folder/continue', { cursor }), { '.tag': 'reset' });
    await assert.rejects(h.call('files/list_folder/continue', { cursor: '' }), badInput(/cursor: '' must be at least 1 characters, got 0/));
  });

  test('longpoll answers at once when changes exist, waits for one otherwise, and stops on abort', async () => {
    const h = new Harness();
    const { cursor } = await h.call('files/list_folder/get_latest_cursor', { path: '', recursive: true });
    const waiting = h.call('files/list_folder/longpoll', { cursor, timeout: 30 });
    await h.upload('/poke.txt', 'x');
    assert.deepEqual(await waiting, { changes: true });
    assert.deepEqual(await h.call('files/list_folder/longpoll', { cursor }), { changes: true });
    const { cursor: fresh } = await h.call('files/list_folder/get_latest_cursor', { path: '' });
    const abort = new AbortController();
    const pending = h.call('files/list_folder/longpoll', { cursor: fresh }, { signal: abort.signal });
    abort.abort();
    assert.deepEqual(await pending, { changes: false });
    assert.deepEqual(await h.fail('files/list_folder/longpoll', { cursor: 'bad' }), { '.tag': 'reset' });
    // A reset answers pending longpolls with changes (the cursor is now invalid); close answers them without.
    const beforeReset = h.call('files/list_folder/longpoll', { cursor: fresh });
    await h.module.reset();
    assert.deepEqual(await beforeReset, { changes: true });
    const { cursor: after } = await h.call('files/list_folder/get_latest_cursor', { path: '' });
    const beforeClose = h.call('files/list_folder/longpoll', { cursor: after });
    await h.module.close?.();
    assert.deepEqual(await beforeClose, { changes: false });
    await assert.rejects(h.call('files/list_folder/longpoll', { cursor: fresh, timeout: 5 }), badInput('request body: timeout: 5 is not within range [30, 480]'));
  });
});

describe('app folders and namespaces', () => {
  test('an app-folder app sees only its folder, created on first use', async () => {
    const h = new Harness();
    const app = { namespaceId: '1001', appFolder: '/Apps/My App' };
    const m = await h.upload('/notes.txt', 'n', {}, { root: app });
    assert.equal(m.path_display, '/notes.txt');
    const list = await h.call('files/list_folder', { path: '' }, { root: app });
    assert.deepEqual(list.entries.map((e: any) => e.path_display), ['/notes.txt']);
    const full = await h.call('files/get_metadata', { path: '/apps/my app/notes.txt' });
    assert.equal(full.path_display, '/Apps/My App/notes.txt');
    await h.upload('/secret.txt', 's');
    assert.deepEqual(await h.fail('files/get_metadata', { path: '/secret.txt' }, { root: app }), { '.tag': 'path', path: { '.tag': 'not_found' } });
    const secret = await h.call('files/get_metadata', { path: '/secret.txt' });
    assert.deepEqual(await h.fail('files/get_metadata', { path: secret.id }, { root: app }), { '.tag': 'path', path: { '.tag': 'not_found' } });
    // Another user's namespace is separate.
    assert.deepEqual(await h.fail('files/get_metadata', { path: '/secret.txt' }, { root: { namespaceId: '2002' } }), { '.tag': 'path', path: { '.tag': 'not_found' } });
    assert.equal(h.module.usedBytes('1001'), 2);
    assert.equal(h.module.usedBytes('2002'), 0);
  });
});

describe('download', () => {
  test('result, ranges, not_file, etag', async () => {
    const h = new Harness();
    const m = await h.upload('/r.bin', '0123456789');
    const d = await h.download('/R.bin');
    assert.deepEqual(d.result, m);
    assert.equal(d.size, 10);
    assert.equal(d.bytes.toString(), '0123456789');
    assert.equal((await h.download('/r.bin', {}, [2, 5])).bytes.toString(), '2345');
    assert.equal(d.etag, `"${m.rev}"`);
    await h.call('files/create_folder_v2', { path: '/folder' });
    assert.deepEqual(await h.fail('files/download', { path: '/folder' }), { '.tag': 'path', path: { '.tag': 'not_file' } });
    const empty = await h.upload('/empty', '');
    assert.equal(empty.content_hash, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal((await h.download('/empty')).size, 0);
  });
});
