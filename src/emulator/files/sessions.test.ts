import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { contentHash } from '../../dropbox/content-hash.js';
import { Harness } from './harness.test-support.js';

const MiB = 1024 * 1024;
const BLOCK = 4 * MiB;

/** Deterministic bytes. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 11)) & 0xff;
  return b;
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

for (const storage of ['memory', 'disk'] as const) {
  const make = () => {
    if (storage === 'memory') return new Harness();
    const dir = mkdtempSync(join(tmpdir(), 'dropkey-files-'));
    dirs.push(dir);
    return new Harness(dir);
  };

  describe(`upload sessions (${storage})`, () => {
    test('sequential: start, append, offsets checked, close, finish', async () => {
      const h = make();
      const data = bytes(3 * MiB + 17, 1);
      const { session_id } = await h.call('files/upload_session/start', {}, { body: data.subarray(0, MiB) });
      assert.match(session_id, /^pid_upload_session:/);
      assert.deepEqual(
        await h.fail('files/upload_session/append_v2', { cursor: { session_id, offset: 0 } }, { body: data.subarray(MiB, 2 * MiB) }),
        { '.tag': 'incorrect_offset', correct_offset: MiB },
      );
      assert.equal(await h.call('files/upload_session/append_v2', { cursor: { session_id, offset: MiB } }, { body: data.subarray(MiB, 2 * MiB) }), null);
      // v1 append: the argument is the cursor.
      assert.equal(await h.call('files/upload_session/append', { session_id, offset: 2 * MiB }, { body: data.subarray(2 * MiB, 3 * MiB) }), null);
      await h.call('files/upload_session/append_v2', { cursor: { session_id, offset: 3 * MiB }, close: true }, { body: data.subarray(3 * MiB) });
      assert.deepEqual(await h.fail('files/upload_session/append_v2', { cursor: { session_id, offset: data.length } }, { body: Buffer.from('x') }), { '.tag': 'closed' });
      assert.deepEqual(
        await h.fail('files/upload_session/finish', { cursor: { session_id, offset: 5 }, commit: { path: '/big.bin' } }),
        { '.tag': 'lookup_failed', lookup_failed: { '.tag': 'incorrect_offset', correct_offset: data.length } },
      );
      const m = await h.call('files/upload_session/finish', { cursor: { session_id, offset: data.length }, commit: { path: '/big.bin' } });
      assert.equal(m.size, data.length);
      assert.equal(m.content_hash, contentHash(data));
      assert.ok(!('.tag' in m));
      const d = await h.download('/big.bin');
      assert.ok(d.bytes.equals(data));
      const ranged = await h.download('/big.bin', {}, [MiB - 3, MiB + 2]);
      assert.ok(ranged.bytes.equals(data.subarray(MiB - 3, MiB + 3)));
      // A finished session is gone for finish and closed for append.
      assert.deepEqual(
        await h.fail('files/upload_session/finish', { cursor: { session_id, offset: data.length }, commit: { path: '/again.bin' } }),
        { '.tag': 'lookup_failed', lookup_failed: { '.tag': 'not_found' } },
      );
    });

    test('finish data arrives with finish; a failed commit leaves the session usable', async () => {
      const h = make();
      await h.upload('/taken', 'x');
      const { session_id } = await h.call('files/upload_session/start', {}, { body: Buffer.from('abc') });
      const conflict = await h.fail('files/upload_session/finish', { cursor: { session_id, offset: 3 }, commit: { path: '/taken' } }, { body: Buffer.from('def') });
      assert.deepEqual(conflict, { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'file' } } });
      // "Data has already been appended ... retry with empty data body and updated offset" (files.stone).
      const m = await h.call('files/upload_session/finish', { cursor: { session_id, offset: 6 }, commit: { path: '/taken', autorename: true } });
      assert.equal(m.name, 'taken (2)');
      assert.equal((await h.download('/taken (2)')).bytes.toString(), 'abcdef');
    });

    test('content_hash per request, session isolation, expiry after 7 days', async () => {
      const h = make();
      const { session_id } = await h.call('files/upload_session/start', { content_hash: contentHash(Buffer.from('one')) }, { body: Buffer.from('one') });
      assert.deepEqual(
        await h.fail('files/upload_session/append_v2', { cursor: { session_id, offset: 3 }, content_hash: contentHash(Buffer.from('xxx')) }, { body: Buffer.from('two') }),
        { '.tag': 'content_hash_mismatch' },
      );
      // The rejected bytes were not kept.
      await h.call('files/upload_session/append_v2', { cursor: { session_id, offset: 3 } }, { body: Buffer.from('TWO') });
      assert.deepEqual(
        await h.fail('files/upload_session/append_v2', { cursor: { session_id, offset: 6 } }, { body: Buffer.from('x'), root: { namespaceId: '2002' } }),
        { '.tag': 'not_found' },
      );
      h.clock += 7 * 24 * 3600 * 1000 - 1;
      await h.call('files/upload_session/append_v2', { cursor: { session_id, offset: 6 } }, { body: Buffer.from('!') });
      h.clock += 2;
      assert.deepEqual(await h.fail('files/upload_session/append_v2', { cursor: { session_id, offset: 7 } }, { body: Buffer.from('x') }), { '.tag': 'not_found' });
      assert.deepEqual(await h.fail('files/upload_session/start', { content_hash: '0'.repeat(64) }, { body: Buffer.from('x') }), { '.tag': 'content_hash_mismatch' });
    });

    test('150 MiB per request: declared length and streamed bytes', async () => {
      const h = make();
      assert.deepEqual(await h.fail('files/upload', { path: '/huge' }, { body: Buffer.from('x'), contentLength: 150 * MiB + 1 }), { '.tag': 'payload_too_large' });
      const { session_id } = await h.call('files/upload_session/start', {}, { body: Buffer.from('ab') });
      const chunk = Buffer.alloc(MiB, 1);
      const chunks = Array.from({ length: 151 }, () => chunk);
      // No usable Content-Length (chunked): the limit is enforced on the bytes themselves.
      assert.deepEqual(
        await h.fail('files/upload_session/append_v2', { cursor: { session_id, offset: 2 } }, { body: chunks, noLength: true }),
        { '.tag': 'payload_too_large' },
      );
      await h.call('files/upload_session/append_v2', { cursor: { session_id, offset: 2 }, close: true }, { body: Buffer.from('cd') });
      const m = await h.call('files/upload_session/finish', { cursor: { session_id, offset: 4 }, commit: { path: '/small' } });
      assert.equal(m.size, 4);
      assert.deepEqual(
        await h.fail('files/upload_session/finish', { cursor: { session_id: 'pid_upload_session:nope', offset: 0 }, commit: { path: '/x' } }, { contentLength: 200 * MiB }),
        { '.tag': 'lookup_failed', lookup_failed: { '.tag': 'not_found' } },
      );
    });

    test('concurrent: 4 MiB alignment, any order, close, missing data, no data on start/finish', async () => {
      const h = make();
      const data = bytes(2 * BLOCK + 1000, 2);
      const concurrent = { session_type: { '.tag': 'concurrent' } };
      assert.deepEqual(await h.fail('files/upload_session/start', concurrent, { body: Buffer.from('x') }), { '.tag': 'concurrent_session_data_not_allowed' });
      assert.deepEqual(await h.fail('files/upload_session/start', { ...concurrent, close: true }), { '.tag': 'concurrent_session_close_not_allowed' });
      const { session_id } = await h.call('files/upload_session/start', concurrent);
      const append = (offset: number, body: Buffer, close = false) =>
        h.call('files/upload_session/append_v2', { cursor: { session_id, offset }, close }, { body });
      assert.deepEqual(
        await h.fail('files/upload_session/append_v2', { cursor: { session_id, offset: 100 } }, { body: data.subarray(0, BLOCK) }),
        { '.tag': 'concurrent_session_invalid_offset' },
      );
      assert.deepEqual(
        await h.fail('files/upload_session/append_v2', { cursor: { session_id, offset: 0 } }, { body: data.subarray(0, 1000) }),
        { '.tag': 'concurrent_session_invalid_data_size' },
      );
      // Last piece first, closing; then the middle one; finishing now is missing data.
      await append(2 * BLOCK, data.subarray(2 * BLOCK), true);
      await append(BLOCK, data.subarray(BLOCK, 2 * BLOCK));
      const finishArg = { cursor: { session_id, offset: data.length }, commit: { path: '/c.bin' } };
      assert.deepEqual(await h.fail('files/upload_session/finish', finishArg), { '.tag': 'concurrent_session_missing_data' });
      await append(0, data.subarray(0, BLOCK));
      assert.deepEqual(await h.fail('files/upload_session/finish', finishArg, { body: Buffer.from('x') }), { '.tag': 'concurrent_session_data_not_allowed' });
      const m = await h.call('files/upload_session/finish', finishArg);
      assert.equal(m.content_hash, contentHash(data));
      assert.ok((await h.download('/c.bin')).bytes.equals(data));

      const { session_id: open } = await h.call('files/upload_session/start', concurrent);
      assert.deepEqual(
        await h.fail('files/upload_session/finish', { cursor: { session_id: open, offset: 0 }, commit: { path: '/d.bin' } }),
        { '.tag': 'concurrent_session_not_closed' },
      );
    });

    test('racing commits to one path: one wins, the loser keeps its bytes in a session', async () => {
      const h = make();
      const settled = await Promise.allSettled([h.upload('/race.txt', 'first'), h.upload('/race.txt', 'second')]);
      const won = settled.filter((r) => r.status === 'fulfilled');
      const lost = settled.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(won.length, 1);
      assert.equal(lost.length, 1);
      const err = (lost[0] as PromiseRejectedResult).reason.error;
      assert.deepEqual(err.reason, { '.tag': 'conflict', conflict: { '.tag': 'file' } });
      const loserBytes = (won[0] as PromiseFulfilledResult<any>).value.size === 5 ? 'second' : 'first';
      await h.call('files/upload_session/finish', { cursor: { session_id: err.upload_session_id, offset: loserBytes.length }, commit: { path: '/loser.txt' } });
      assert.equal((await h.download('/loser.txt')).bytes.toString(), loserBytes);
    });

    test('concurrent finishes of one session: exactly one file, the others lookup_failed/not_found', async () => {
      const h = make();
      for (const close of [true, false]) {
        const data = bytes(1000, close ? 5 : 6);
        const { session_id } = await h.call('files/upload_session/start', { close }, { body: data });
        const settled = await Promise.allSettled(
          Array.from({ length: 5 }, (_, i) =>
            h.call('files/upload_session/finish', { cursor: { session_id, offset: data.length }, commit: { path: `/race-${close}-${i}.bin` } }),
          ),
        );
        const won = settled.filter((r) => r.status === 'fulfilled');
        assert.equal(won.length, 1, `one finish wins (close: ${close})`);
        for (const r of settled) {
          if (r.status === 'rejected') {
            assert.deepEqual(r.reason.error, { '.tag': 'lookup_failed', lookup_failed: { '.tag': 'not_found' } });
          }
        }
        const listed = (await h.call('files/list_folder', { path: '' })).entries.filter((e: any) => e.name.startsWith(`race-${close}-`));
        assert.equal(listed.length, 1);
        assert.ok((await h.download(listed[0].path_lower)).bytes.equals(data));
      }
    });

    test('a concurrent session whose finish conflicts can be finished again', async () => {
      const h = make();
      await h.call('files/create_folder_v2', { path: '/occupied' });
      const { session_id } = await h.call('files/upload_session/start', { session_type: 'concurrent' });
      const data = bytes(BLOCK + 5, 3);
      await h.call('files/upload_session/append_v2', { cursor: { session_id, offset: 0 } }, { body: data.subarray(0, BLOCK) });
      await h.call('files/upload_session/append_v2', { cursor: { session_id, offset: BLOCK }, close: true }, { body: data.subarray(BLOCK) });
      const arg = { cursor: { session_id, offset: data.length }, commit: { path: '/occupied' } };
      assert.deepEqual(await h.fail('files/upload_session/finish', arg), { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'folder' } } });
      const m = await h.call('files/upload_session/finish', { ...arg, commit: { path: '/occupied', autorename: true } });
      assert.equal(m.name, 'occupied (2)');
      assert.ok((await h.download('/occupied (2)')).bytes.equals(data));
    });

    test('start_batch and finish_batch_v2: per-entry success and failure', async () => {
      const h = make();
      const { session_ids } = await h.call('files/upload_session/start_batch', { num_sessions: 3 });
      assert.equal(session_ids.length, 3);
      const [a, b, c] = session_ids as [string, string, string];
      await h.call('files/upload_session/append_v2', { cursor: { session_id: a, offset: 0 }, close: true }, { body: Buffer.from('alpha') });
      await h.call('files/upload_session/append_v2', { cursor: { session_id: b, offset: 0 } }, { body: Buffer.from('beta') });
      await h.call('files/upload_session/append_v2', { cursor: { session_id: c, offset: 0 }, close: true }, { body: Buffer.from('gamma') });
      await h.call('files/create_folder_v2', { path: '/batch/c.txt' });
      const result = await h.call('files/upload_session/finish_batch_v2', {
        entries: [
          { cursor: { session_id: a, offset: 5 }, commit: { path: '/batch/a.txt' } },
          { cursor: { session_id: b, offset: 4 }, commit: { path: '/batch/b.txt' } },
          { cursor: { session_id: c, offset: 5 }, commit: { path: '/batch/c.txt' } },
        ],
      });
      assert.equal(result.entries[0]['.tag'], 'success');
      assert.equal(result.entries[0].path_display, '/batch/a.txt');
      assert.equal(result.entries[0].size, 5);
      assert.deepEqual(result.entries[1], { '.tag': 'failure', failure: { '.tag': 'lookup_failed', lookup_failed: { '.tag': 'not_closed' } } });
      assert.deepEqual(result.entries[2], { '.tag': 'failure', failure: { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'folder' } } } });
      assert.deepEqual(await h.call('files/upload_session/finish_batch_v2', { entries: [] }), { entries: [] });
    });
  });
}
