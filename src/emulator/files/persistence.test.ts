import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { contentHash } from '../../dropbox/content-hash.js';
import { Harness } from './harness.test-support.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-files-persist-'));
  dirs.push(dir);
  return dir;
};

test('state survives re-creation with the same data directory', async () => {
  const dir = tempDir();
  const first = new Harness(dir);
  const app = { namespaceId: '1001', appFolder: '/Apps/Demo' };
  const a = await first.upload('/Docs/a.txt', 'alpha');
  await first.upload('/Docs/a.txt', 'alpha two', { mode: 'overwrite' });
  await first.upload('/in-app.txt', 'app', {}, { root: app });
  await first.call('files/create_folder_v2', { path: '/Empty' });
  await first.call('files/copy_v2', { from_path: '/Docs/a.txt', to_path: '/copy.txt' });
  const listing = await first.call('files/list_folder', { path: '', recursive: true });
  await first.module.close?.();

  // Contents are files on disk, named by content hash; metadata is JSON.
  assert.ok(existsSync(join(dir, 'blobs', contentHash(Buffer.from('alpha two')))));
  const saved = JSON.parse(readFileSync(join(dir, 'namespaces', '1001.json'), 'utf8'));
  assert.equal(saved.id, '1001');

  const second = new Harness(dir);
  second.clock = first.clock;
  const meta = await second.call('files/get_metadata', { path: '/docs/A.TXT' });
  assert.equal(meta.id, a.id);
  assert.equal((await second.download('/Docs/a.txt')).bytes.toString(), 'alpha two');
  assert.equal((await second.download(`rev:${a.rev}`)).bytes.toString(), 'alpha', 'older revisions persist too');
  assert.equal((await second.download('/in-app.txt', { root: app })).bytes.toString(), 'app');
  assert.equal(second.module.usedBytes('1001'), 'alpha two'.length * 2 + 3);
  // An old cursor keeps working across the restart and sees later changes.
  const none = await second.call('files/list_folder/continue', { cursor: listing.cursor });
  assert.deepEqual(none.entries, []);
  await second.call('files/delete_v2', { path: '/Empty' });
  const later = await second.call('files/list_folder/continue', { cursor: listing.cursor });
  assert.deepEqual(later.entries, [{ '.tag': 'deleted', name: 'Empty', path_lower: '/empty', path_display: '/Empty' }]);
});

test('unreferenced blobs and leftover staging are cleaned at startup; reset empties the directory', async () => {
  const dir = tempDir();
  const h = new Harness(dir);
  await h.upload('/keep.txt', 'keep');
  const { session_id } = await h.call('files/upload_session/start', {}, { body: Buffer.from('pending') });
  assert.ok(session_id);
  assert.equal(readdirSync(join(dir, 'staging')).length, 1);
  await h.call('files/upload_session/append_v2', { cursor: { session_id, offset: 7 } }, { body: Buffer.from('!') });
  // Overwritten content stays as a revision; deleting a file keeps its revisions (restorable), so blobs remain.
  await h.upload('/gone.txt', 'gone');
  await h.call('files/delete_v2', { path: '/gone.txt' });

  // A blob no saved revision references (as after a crash between writing it and saving metadata).
  writeFileSync(join(dir, 'blobs', 'f'.repeat(64)), 'orphan');
  const again = new Harness(dir);
  assert.equal(existsSync(join(dir, 'blobs', 'f'.repeat(64))), false);
  assert.equal(readdirSync(join(dir, 'staging')).length, 0, 'sessions do not survive a restart');
  assert.deepEqual(
    await again.fail('files/upload_session/append_v2', { cursor: { session_id, offset: 8 } }, { body: Buffer.from('x') }),
    { '.tag': 'not_found' },
  );
  assert.equal((await again.download('/keep.txt')).bytes.toString(), 'keep');
  await again.module.reset();
  assert.deepEqual(readdirSync(join(dir, 'blobs')), []);
  assert.deepEqual(await again.fail('files/get_metadata', { path: '/keep.txt' }), { '.tag': 'path', path: { '.tag': 'not_found' } });
  const third = new Harness(dir);
  assert.deepEqual(await third.fail('files/get_metadata', { path: '/keep.txt' }), { '.tag': 'path', path: { '.tag': 'not_found' } });
});

test('storage stays bounded: old revisions beyond the last 10 and their blobs go away; copies share a blob', async () => {
  const dir = tempDir();
  const h = new Harness(dir);
  const first = await h.upload('/v.txt', 'version 0');
  for (let i = 1; i < 12; i++) await h.upload('/v.txt', `version ${i}`, { mode: 'overwrite' });
  assert.equal(readdirSync(join(dir, 'blobs')).length, 10);
  assert.deepEqual(await h.fail('files/download', { path: `rev:${first.rev}` }), { '.tag': 'path', path: { '.tag': 'not_found' } });
  await h.call('files/copy_v2', { from_path: '/v.txt', to_path: '/w.txt' });
  assert.equal(readdirSync(join(dir, 'blobs')).length, 10);
  // Re-uploading content whose blob was just dropped works (no stale unlink).
  await h.upload('/again.txt', 'version 0');
  assert.equal((await h.download('/again.txt')).bytes.toString(), 'version 0');
});
