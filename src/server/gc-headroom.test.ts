import assert from 'node:assert/strict';
import { test } from 'node:test';
import { growingPercentFor, HEADROOM_BYTES, oldGenerationBytes, startGcHeadroom } from './gc-headroom.js';

const MiB = 1024 * 1024;

test('growingPercentFor puts the limit HEADROOM above the live size, capped, and leaves large heaps to V8', () => {
  assert.equal(growingPercentFor(4 * MiB), 400); // below the 8 MiB activation threshold: the cap
  assert.equal(growingPercentFor(8 * MiB), 400);
  assert.equal(growingPercentFor(16 * MiB), 300);
  assert.equal(growingPercentFor(32 * MiB), 150);
  assert.equal(growingPercentFor(48 * MiB), 100);
  for (const live of [12, 20, 40, 63].map((m) => m * MiB)) {
    const p = growingPercentFor(live);
    assert.ok((live * p) / 100 >= HEADROOM_BYTES || p === 400, `${live}: ${p}`);
  }
  assert.equal(growingPercentFor(64 * MiB), 0);
  assert.equal(growingPercentFor(512 * MiB), 0);
});

test('oldGenerationBytes sums the old, code and large-object spaces only', () => {
  const space = (space_name: string, space_used_size: number) => ({ space_name, space_used_size, space_size: 0, space_available_size: 0, physical_space_size: 0 });
  assert.equal(oldGenerationBytes([space('new_space', 100), space('old_space', 5), space('code_space', 3), space('large_object_space', 2), space('read_only_space', 7)]), 10);
  assert.ok(oldGenerationBytes() > 0);
});

test('startGcHeadroom sets the flag for the current heap at once and gives V8 its default back on stop', () => {
  const set: string[] = [];
  const h = startGcHeadroom((f) => set.push(f));
  assert.equal(set.length, 1);
  assert.equal(set[0], `--heap-growing-percent=${growingPercentFor(oldGenerationBytes())}`);
  assert.equal(h.percent, growingPercentFor(oldGenerationBytes()));
  h.stop();
  assert.equal(set.at(-1), '--heap-growing-percent=0');
  assert.equal(h.percent, 0);
});

test('raiseMallocThresholds: one untouched block just under glibc 32 MiB cap, on glibc Linux only, never over explicit settings', async () => {
  const { raiseMallocThresholds, MALLOC_PRIMER_BYTES } = await import('./gc-headroom.js');
  const sizes: number[] = [];
  const allocate = (n: number) => sizes.push(n);
  const onLinux = process.platform === 'linux';
  assert.equal(raiseMallocThresholds({}, () => '2.36', allocate), onLinux);
  assert.deepEqual(sizes, onLinux ? [MALLOC_PRIMER_BYTES] : []);
  assert.ok(MALLOC_PRIMER_BYTES < 32 * 1024 * 1024, 'under DEFAULT_MMAP_THRESHOLD_MAX, or glibc would not raise its threshold');
  assert.equal(raiseMallocThresholds({}, () => undefined, allocate), false, 'musl: nothing to do');
  assert.equal(raiseMallocThresholds({ MALLOC_TRIM_THRESHOLD_: '1048576' }, () => '2.36', allocate), false, 'explicit settings win');
  assert.equal(sizes.length, onLinux ? 1 : 0);
});
