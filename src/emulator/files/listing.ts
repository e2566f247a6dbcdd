/**
 * list_folder, list_folder/continue, get_latest_cursor and longpoll over a namespace's change log.
 *
 * A cursor is opaque to clients (base64url JSON here). It is in one of two phases: listing (the folder's current
 * entries in path order, paged by `limit`, resumed after the last path returned) or changes (entries whose path
 * changed after log position `s`, each reported with its current state, deleted ones as DeletedMetadata).
 * Changes made while a listing is paged are replayed afterwards: a client may see an entry twice, never miss one,
 * which is what list_folder's sync rules in files.stone tolerate.
 */
import type { FileSystem, Stone, View } from './fs.js';
import type { Namespace } from './namespace.js';
import { isWithin, parentOf } from './paths.js';

/** Entries per page when the client gives no `limit` (ListFolderArg.limit is at most 2000). */
export const DEFAULT_PAGE = 2000;

interface CursorState {
  v: 1;
  ns: string;
  /** Namespace epoch: a reset invalidates older cursors. */
  ep: string;
  /** The caller's root (app folder) the cursor was made for. */
  app: string;
  /** Listed folder, namespace-absolute lower path. */
  p: string;
  r: boolean;
  d: boolean;
  l: number;
  /** Change-log position the cursor has seen up to. */
  s: number;
  /** Listing phase: the last path returned. */
  a?: string;
}

/** ListFolderContinueError.reset / ListFolderLongpollError.reset: the client must list again. */
export class CursorReset extends Error {
  constructor() {
    super('cursor reset');
  }
}

export interface ListOptions {
  recursive: boolean;
  includeDeleted: boolean;
  limit: number | undefined;
}

function encode(c: CursorState): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

/** Parses a cursor; anything malformed or from another epoch is a reset. */
export function decodeCursor(fs: FileSystem, cursor: string): { state: CursorState; ns: Namespace } {
  let state: CursorState;
  try {
    state = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as CursorState;
  } catch {
    throw new CursorReset();
  }
  if (typeof state !== 'object' || state === null || state.v !== 1 || typeof state.ns !== 'string') throw new CursorReset();
  const ns = fs.existing(state.ns);
  if (!ns || ns.epoch !== state.ep || state.s < ns.firstSeq - 1 || state.s > ns.seq) throw new CursorReset();
  return { state, ns };
}

/** Whether a namespace path belongs to the listing a cursor describes. */
function inScope(path: string, c: CursorState): boolean {
  // Recursive listings include the listed folder itself, except the caller's root.
  if (c.r) return isWithin(path, c.p) && path !== c.app;
  return parentOf(path) === c.p && path !== '';
}

function listingPage(fs: FileSystem, view: View, c: CursorState): { entries: Stone[]; cursor: string; has_more: boolean } {
  const ns = view.ns;
  const paths = new Set<string>();
  if (c.r) {
    if (c.p !== view.root) paths.add(c.p);
    for (const p of ns.descendants(c.p)) paths.add(p);
  } else {
    for (const p of ns.children.get(c.p) ?? []) paths.add(p);
  }
  if (c.d) for (const p of ns.tombstones.keys()) if (!ns.get(p) && inScope(p, c)) paths.add(p);
  const sorted = [...paths].sort().filter((p) => c.a === undefined || p > c.a);
  const page = sorted.slice(0, c.l);
  const entries = page.map((p) => {
    const node = ns.get(p);
    return node ? fs.metadata(view, node, true) : fs.deletedMetadata(view, (ns.tombstones.get(p) ?? { display: p }).display);
  });
  const hasMore = sorted.length > page.length;
  const next: CursorState = { ...c };
  if (hasMore) next.a = page[page.length - 1] as string;
  else delete next.a;
  return { entries, cursor: encode(next), has_more: hasMore };
}

function changesPage(fs: FileSystem, view: View, c: CursorState): { entries: Stone[]; cursor: string; has_more: boolean } {
  const ns = view.ns;
  const entries: Stone[] = [];
  const seen = new Set<string>();
  let s = c.s;
  let hasMore = false;
  for (let i = Math.max(0, c.s - ns.firstSeq + 1); i < ns.changes.length; i++) {
    const change = ns.changes[i];
    if (!change || change.seq <= c.s) continue;
    if (!inScope(change.lower, c) || seen.has(change.lower)) {
      s = change.seq;
      continue;
    }
    if (entries.length >= c.l) {
      hasMore = true;
      break;
    }
    seen.add(change.lower);
    const node = ns.get(change.lower);
    entries.push(node ? fs.metadata(view, node, true) : fs.deletedMetadata(view, change.display));
    s = change.seq;
  }
  if (!hasMore) s = ns.seq;
  return { entries, cursor: encode({ ...c, s }), has_more: hasMore };
}

/** list_folder: `path` is the namespace-absolute lower path of an existing folder (or the view's root). */
export function listFolder(fs: FileSystem, view: View, path: string, opts: ListOptions) {
  return listingPage(fs, view, cursorNow(view, path, opts));
}

export function latestCursor(view: View, path: string, opts: ListOptions): string {
  return encode(cursorNow(view, path, opts));
}

/** The state of a fresh listing of `path` at the namespace's current change sequence (changes after it go to /continue). */
function cursorNow(view: View, path: string, opts: ListOptions): CursorState {
  return {
    v: 1,
    ns: view.ns.id,
    ep: view.ns.epoch,
    app: view.root,
    p: path,
    r: opts.recursive,
    d: opts.includeDeleted,
    l: opts.limit ?? DEFAULT_PAGE,
    s: view.ns.seq,
  };
}

export function continueListing(fs: FileSystem, view: View, cursor: string) {
  const { state, ns } = decodeCursor(fs, cursor);
  // A cursor belongs to the user and app root it was made for.
  if (ns !== view.ns || state.app !== view.root) throw new CursorReset();
  return state.a !== undefined ? listingPage(fs, view, state) : changesPage(fs, view, state);
}

/** True when continue would return something now. */
export function hasChanges(ns: Namespace, state: CursorState): boolean {
  if (state.a !== undefined) return true;
  for (let i = Math.max(0, state.s - ns.firstSeq + 1); i < ns.changes.length; i++) {
    const change = ns.changes[i];
    if (change && change.seq > state.s && inScope(change.lower, state)) return true;
  }
  return false;
}

/**
 * list_folder/longpoll: answers `changes: true` as soon as the cursor has changes, or `changes: false` after
 * `timeoutSeconds` of real time (ListFolderLongpollArg.timeout, 30..480; Dropbox adds up to 90 s of jitter, we
 * add none). Returns early, with no changes, when the request is aborted.
 */
export async function longpoll(fs: FileSystem, cursor: string, timeoutSeconds: number, signal: AbortSignal): Promise<Stone> {
  const { state, ns } = decodeCursor(fs, cursor);
  if (hasChanges(ns, state)) return { changes: true };
  const changed = await new Promise<boolean>((resolve) => {
    const done = (value: boolean) => {
      clearTimeout(timer);
      ns.listeners.delete(onChange);
      fs.waiters.delete(done);
      signal.removeEventListener('abort', onAbort);
      resolve(value);
    };
    const onChange = () => {
      if (hasChanges(ns, state)) done(true);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(false), timeoutSeconds * 1000);
    ns.listeners.add(onChange);
    fs.waiters.add(done);
    signal.addEventListener('abort', onAbort);
    if (signal.aborted) onAbort();
  });
  return { changes: changed };
}
