/**
 * Old-generation headroom for `dropkey serve`, so that streaming through the proxy does not run V8's full
 * garbage collector every few dozen MiB.
 *
 * Why (measured with bench/serve-proxy.mjs and `--trace-gc --trace-incremental-marking`, Node 20 / V8 11.3):
 * every socket read is a new ArrayBuffer, and V8 11.3 counts ArrayBuffer bytes allocated since the last
 * mark-compact against the OLD generation's allocation limit (Heap::OldGenerationSpaceAvailable; later V8s stop
 * doing so, flag external_memory_accounted_in_global_limit). Those buffers die young: a scavenge frees them about
 * every 32 MiB (2 × the maximum semi-space). But once the old generation holds more than 8 MiB (V8's activation
 * threshold for incremental marking; dropkey's loaded modules put it right there, a bare node:http pipe stays at
 * ~4 MiB), the limit V8 sets after each mark-compact is only ~11 MiB above the live size, because the old
 * generation hardly grows (growing factor ~1.2). So 8 MiB of in-flight socket buffers start the next marking, and
 * a proxied download runs a mark-compact about every 10 MiB: 40 per GiB, ~2.2 CPU s/GiB instead of ~1.2.
 * (A bare pipe with 5 MiB of extra live objects does the same; the proxy's own per-chunk work is < 1 % of samples.)
 *
 * Fix: the one V8 knob read at every limit computation, `--heap-growing-percent`, set at run time so that the
 * limit lies at least HEADROOM above the live old generation, like `node --initial-old-space-size=64` does at
 * start-up (that flag has no effect once the heap exists). It is recomputed after each major GC from the live
 * size, and left to V8's own heuristics once the old generation is large enough for them to leave that headroom.
 * The headroom is a limit, not memory: the old generation only grows that far if the program allocates there.
 */
import { PerformanceObserver, constants } from 'node:perf_hooks';
import v8 from 'node:v8';

const MiB = 1024 * 1024;
/** How far above the live old generation the next mark-compact may wait (external bytes included). */
export const HEADROOM_BYTES = 48 * MiB;
/** Above this live size V8's own limit (≥ live + 8 MiB + new space, growing factor up to 4) is left alone. */
const MANAGED_UP_TO_BYTES = 64 * MiB;
/** A factor of 5 at most: with the 8 MiB activation threshold that is already a 40 MiB limit. */
const MAX_PERCENT = 400;

const OLD_SPACES = new Set(['old_space', 'code_space', 'large_object_space', 'code_large_object_space']);

/** The old generation's live bytes, as V8 counts them for its limit (old, code and large-object spaces). */
export function oldGenerationBytes(spaces = v8.getHeapSpaceStatistics()): number {
  let used = 0;
  for (const s of spaces) if (OLD_SPACES.has(s.space_name)) used += s.space_used_size;
  return used;
}

/** The --heap-growing-percent that puts the limit HEADROOM above `liveBytes`; 0 = V8's own heuristics. */
export function growingPercentFor(liveBytes: number): number {
  if (liveBytes >= MANAGED_UP_TO_BYTES) return 0;
  return Math.min(MAX_PERCENT, Math.ceil((HEADROOM_BYTES * 100) / Math.max(liveBytes, 8 * MiB)));
}

export interface GcHeadroom {
  /** The percent currently set (0: V8's default). */
  readonly percent: number;
  /** Stops adjusting and gives V8 back its default growing factor. */
  stop(): void;
}

/**
 * Sets the growing percent now and after every major GC. Process-wide (V8 flags are): call it from the
 * `dropkey serve` entry point, not from code embedded in someone else's process.
 */
export function startGcHeadroom(setFlags: (flags: string) => void = v8.setFlagsFromString): GcHeadroom {
  let percent = -1;
  const apply = () => {
    const next = growingPercentFor(oldGenerationBytes());
    if (next === percent) return;
    percent = next;
    setFlags(`--heap-growing-percent=${next}`);
  };
  apply();
  const observer = new PerformanceObserver((list) => {
    const major = list.getEntries().some((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR);
    if (major) apply();
  });
  observer.observe({ entryTypes: ['gc'] });
  return {
    get percent() {
      return percent;
    },
    stop() {
      observer.disconnect();
      if (percent !== 0) setFlags('--heap-growing-percent=0');
      percent = 0;
    },
  };
}

/**
 * Size of the block raiseMallocThresholds() allocates and drops: just under glibc's DEFAULT_MMAP_THRESHOLD_MAX
 * (32 MiB on 64-bit), the most its dynamic threshold can be raised to.
 */
export const MALLOC_PRIMER_BYTES = 31 * MiB;

/**
 * glibc's allocator, left alone, gives freed memory back to the kernel as soon as a large enough block at the top of
 * its heap is free (trim threshold 128 KiB) and serves blocks above 128 KiB with fresh mmap()s. A proxied stream
 * allocates a 64 KiB socket buffer per read and frees ~30 MiB of them at each scavenge, so the heap is trimmed and
 * the next 30 MiB of reads fault their pages in again: bench/serve-proxy.mjs measured 35,000-160,000 minor faults
 * per GiB and up to 3 times the CPU per GiB of the same run with MALLOC_TRIM_THRESHOLD_/MALLOC_MMAP_THRESHOLD_ set.
 * Those variables must be set before the process starts, but glibc also raises both thresholds by itself when a
 * block it had mmap()ed is freed (mallopt(3), "dynamic mmap threshold": mmap threshold = the block's size, trim
 * threshold = twice that). So one untouched block of MALLOC_PRIMER_BYTES, allocated and dropped at start-up, does
 * the same from inside the process once the garbage collector frees it (its pages are never touched: no RSS).
 * A no-op off glibc (musl, macOS, Windows) and when the variables are set explicitly. Returns whether it ran.
 */
export function raiseMallocThresholds(
  env: Record<string, string | undefined>,
  glibc: () => string | undefined = () => (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime,
  allocate: (bytes: number) => unknown = (bytes) => Buffer.allocUnsafeSlow(bytes),
): boolean {
  if (process.platform !== 'linux') return false;
  if (env['MALLOC_MMAP_THRESHOLD_'] !== undefined || env['MALLOC_TRIM_THRESHOLD_'] !== undefined) return false;
  if (glibc() === undefined) return false;
  allocate(MALLOC_PRIMER_BYTES);
  return true;
}
