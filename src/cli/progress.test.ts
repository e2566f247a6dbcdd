/**
 * Progress on a terminal: an injected clock and interval, and streams that say whether they are a terminal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { progressEnabled, progressStream, startProgress, type ProgressTimers } from './progress.js';
import { announcingLockWaits, announcingSlowRequests } from './session.js';
import type { Store } from '../store/types.js';

function fakeTimers() {
  let now = 0;
  const ticks = new Map<number, () => void>();
  let id = 0;
  const timers: ProgressTimers = {
    now: () => now,
    setInterval: (fn) => {
      ticks.set(++id, fn);
      return id;
    },
    clearInterval: (h) => void ticks.delete(h as number),
  };
  /** Moves the clock by `ms` in quarter seconds, running the interval callbacks at each step. */
  const advance = (ms: number): void => {
    for (let i = 0; i < ms / 250; i++) {
      now += 250;
      for (const fn of [...ticks.values()]) fn();
    }
  };
  return { timers, advance, pending: () => ticks.size };
}

function stream(isTTY: boolean) {
  const out = { text: '', isTTY, write: (s: string) => ((out.text += s), true) };
  return out;
}

test('progress is shown only on a terminal and never with --json', () => {
  assert.equal(progressEnabled(stream(false)), false);
  assert.equal(progressEnabled(stream(true), true), false);
  assert.equal(progressEnabled(undefined), false);
  assert.equal(progressEnabled(stream(true)), true);
  const tty = stream(true);
  assert.equal(progressStream({ stderr: tty as never, argv: ['--connection', 'x'] }), tty);
  assert.equal(progressStream({ stderr: tty as never, argv: ['--json'] }), undefined);
  assert.equal(progressStream({ stderr: stream(false) as never, argv: [] }), undefined);

  for (const [s, json] of [[stream(false), false], [stream(true), true]] as const) {
    const { timers, advance, pending } = fakeTimers();
    const p = startProgress(s, (ms) => `waiting ${ms}`, { json, timers });
    assert.equal(pending(), 0, 'nothing is even scheduled');
    advance(5_000);
    p.stop();
    assert.equal(s.text, '');
  }
});

test('on a terminal: nothing for the first second, then one line rewritten in place, erased at the end', () => {
  const s = stream(true);
  const { timers, advance, pending } = fakeTimers();
  const p = startProgress(s, (ms) => `waiting ${Math.floor(ms / 1000)} s`, { timers });
  advance(750);
  assert.equal(s.text, '');
  assert.equal(p.shown, false);
  advance(250);
  assert.equal(s.text, '\r\u001b[Kwaiting 1 s');
  advance(500);
  assert.equal(s.text, '\r\u001b[Kwaiting 1 s', 'the same text is not written again');
  advance(500);
  assert.equal(s.text, '\r\u001b[Kwaiting 1 s\r\u001b[Kwaiting 2 s');
  assert.doesNotMatch(s.text, /\n/, 'one line');
  assert.equal(p.stop(), 2_000);
  assert.match(s.text, /\r\u001b\[K$/, 'erased');
  assert.equal(pending(), 0);
  const before = s.text;
  advance(2_000);
  p.stop();
  assert.equal(s.text, before, 'nothing after stop');

  const quick = stream(true);
  const q = fakeTimers();
  startProgress(quick, () => 'x', { timers: q.timers }).stop();
  q.advance(3_000);
  assert.equal(quick.text, '', 'a wait shorter than a second shows nothing, not even an erase');
});

test('a lock wait and a slow Dropbox answer show progress on a terminal, and only while they last', async () => {
  const s = stream(true);
  const { timers, advance } = fakeTimers();
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const store = { withLock: async (_k: string, _o: unknown, fn: (l: unknown) => unknown) => { await held; return fn({}); } } as unknown as Store;
  const running = announcingLockWaits(store, s, timers).withLock('refresh:c', {} as never, async () => 'done');
  advance(1_000);
  assert.match(s.text, /waiting for another dropkey process \(it holds the lock "refresh:c"\)\.\.\. 1 s/);
  release();
  assert.equal(await running, 'done');
  assert.ok(s.text.endsWith('\r\u001b[K'));

  const f = stream(true);
  let answer!: (r: Response) => void;
  const slow = announcingSlowRequests((() => new Promise<Response>((r) => (answer = r))) as unknown as typeof fetch, f, timers)('http://127.0.0.1:9/oauth2/token?x=secret', { method: 'POST' });
  advance(2_000);
  assert.match(f.text, /waiting for Dropbox to answer \(POST http:\/\/127\.0\.0\.1:9\/oauth2\/token\)\.\.\. 2 s/);
  assert.doesNotMatch(f.text, /secret/);
  answer(new Response('{}'));
  await slow;
  assert.match(f.text, /\r\u001b\[Kdropkey: Dropbox answered after 2\.0 s\.\n$/);

  const pipe = stream(false);
  const quiet = announcingSlowRequests((async () => new Response('{}')) as unknown as typeof fetch, pipe, timers)('http://127.0.0.1:9/2/x');
  advance(3_000);
  await quiet;
  assert.equal(pipe.text, '', 'not a terminal: silent');
});
