/**
 * content_hash as Dropbox computes it (https://www.dropbox.com/developers/reference/content-hash), checked through the emulator's upload, metadata and
 * download routes against an independent computation. Runs in-process through the emulator's `fetch` (no port).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startEmulator, userWithToken, type StartedEmulator } from '../helpers/emulator.js';
import { BLOCK_SIZE, blockDigests, dropboxContentHash, patternBytes } from '../helpers/content-hash.js';

const EMPTY_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

let emu: StartedEmulator;
let token: string;

before(async () => {
  emu = await startEmulator({}, { listen: false });
  token = (await userWithToken(emu)).token.access_token;
});
after(async () => {
  await emu?.close();
});

test('the independent reference implementation follows the published rule', () => {
  // Empty input: no blocks, so SHA-256 of nothing (Dropbox content hash reference).
  assert.equal(dropboxContentHash(Buffer.alloc(0)), EMPTY_HASH);
  // One block: SHA-256 of the block's raw digest, not of the bytes.
  const abc = Buffer.from('abc');
  const inner = createHash('sha256').update(abc).digest();
  assert.equal(dropboxContentHash(abc), createHash('sha256').update(inner).digest('hex'));
  assert.notEqual(dropboxContentHash(abc), createHash('sha256').update(abc).digest('hex'));
  // The docs' vector is a 9,711,423-byte file: three blocks, the last one short.
  assert.equal(blockDigests(Buffer.alloc(9_711_423)).length, 3);
});

async function uploadAndCheck(path: string, data: Buffer): Promise<void> {
  const expected = dropboxContentHash(data);
  const up = await emu.upload('files/upload', { path, mode: 'add', autorename: false, mute: false }, data, token);
  assert.equal(up.status, 200, up.text);
  assert.equal(up.headers.get('content-type'), 'application/json');
  assert.equal(up.json.size, data.length);
  assert.equal(up.json.content_hash, expected, `upload result content_hash for ${data.length} bytes`);

  const meta = await emu.rpc('files/get_metadata', { path }, token);
  assert.equal(meta.status, 200, meta.text);
  assert.equal(meta.json['.tag'], 'file');
  assert.equal(meta.json.content_hash, expected);

  const down = await emu.download('files/download', { path }, token);
  assert.equal(down.status, 200);
  const result = JSON.parse(down.headers.get('dropbox-api-result') ?? 'null');
  assert.equal(result.content_hash, expected);
  assert.equal(dropboxContentHash(down.bytes), expected, 'downloaded bytes hash to the advertised content_hash');
  assert.ok(down.bytes.equals(data), 'downloaded bytes equal the uploaded bytes');
}

test('empty file has the empty-input hash e3b0c442...b855', async () => {
  await uploadAndCheck('/hash/empty.bin', Buffer.alloc(0));
});

test('small file: hash of the single block digest', async () => {
  await uploadAndCheck('/hash/hello.txt', Buffer.from('Hello, Dropbox content hash!\n'));
});

test('exactly one 4 MiB block, and one byte more (block boundary)', async () => {
  const data = patternBytes(BLOCK_SIZE + 1, 7);
  await uploadAndCheck('/hash/one-block.bin', data.subarray(0, BLOCK_SIZE));
  await uploadAndCheck('/hash/one-block-plus-one.bin', data);
});

test('multi-block file the size of the published vector (9,711,423 bytes, 3 blocks)', async () => {
  const data = patternBytes(9_711_423, 42);
  // Sanity: composition differs from a plain SHA-256 of the file, so a naive server cannot pass.
  assert.notEqual(dropboxContentHash(data), createHash('sha256').update(data).digest('hex'));
  await uploadAndCheck('/hash/published-size.bin', data);
});
