// Test preload (node --import): the CLI child's clock runs ahead of the real one, in step with the emulator clock a
// test moved through POST /_emulator/clock. Time passing is simulated on both sides; dropkey's own code is
// unchanged (it reads Date.now and sets timers like in production).
//   FAKE_CLOCK_OFFSET_MS  a fixed offset for the child's whole life (short commands);
//   FAKE_CLOCK_FILE       a file holding the offset, which the test may rewrite (write a temporary file, rename)
//                         while the child runs (long-running commands such as `dropkey exec --renew`). When the
//                         clock moves, every timer whose time has come in the moved clock fires at once.
import { readFileSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';

const file = process.env.FAKE_CLOCK_FILE;
const readOffset = () => {
  const n = Number(readFileSync(file, 'utf8').trim());
  return Number.isFinite(n) ? n : null;
};
let offset = file ? (readOffset() ?? 0) : Number(process.env.FAKE_CLOCK_OFFSET_MS ?? 0);

if (offset || file) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  class ShiftedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(realNow() + offset);
      else super(...args);
    }
    static now() {
      return realNow() + offset;
    }
  }
  globalThis.Date = ShiftedDate;
}

if (file) {
  const realSetTimeout = globalThis.setTimeout;
  const realClearTimeout = globalThis.clearTimeout;
  /** Pending timers and when they are due on the shifted clock. */
  const pending = new Map();
  globalThis.setTimeout = function setTimeout(fn, ms, ...args) {
    const delay = Math.max(0, Number(ms) || 0);
    const entry = { due: Date.now() + delay, fn, args };
    const handle = realSetTimeout(() => {
      pending.delete(handle);
      fn(...args);
    }, delay);
    pending.set(handle, entry);
    return handle;
  };
  globalThis.clearTimeout = function clearTimeout(handle) {
    pending.delete(handle);
    realClearTimeout(handle);
  };
  const fireDue = () => {
    const now = Date.now();
    for (const [handle, t] of pending) {
      if (t.due > now) continue;
      pending.delete(handle);
      realClearTimeout(handle);
      realSetTimeout(() => t.fn(...t.args), 0);
    }
  };
  // The directory is watched, not the file: the test replaces the file by rename, which a file watch would miss.
  watch(dirname(file), (_event, name) => {
    if (name !== null && name !== basename(file)) return;
    let next;
    try {
      next = readOffset();
    } catch {
      return;
    }
    if (next === null || next === offset) return;
    offset = next;
    fireDue();
  }).unref();
}
