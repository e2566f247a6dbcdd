/**
 * One Dropbox namespace (a user's home): a tree of files and folders keyed by lower-case path, file revisions,
 * what used to exist at deleted paths, and an append-only change log that list_folder cursors read.
 *
 * Paths here are namespace-absolute ("" is the namespace root, "/apps/my app/x.txt"); views (views.ts) translate
 * an app's paths. Every method is synchronous: the file system awaits blob I/O first, then mutates in one step,
 * so concurrent requests never see half a change.
 */
import { randomBytes } from 'node:crypto';
import { baseName, lower, parentOf } from './paths.js';

export interface FileRevision {
  rev: string;
  /** File id ("id:..."), shared by all revisions of one file. */
  id: string;
  /** Full display path at the time of this revision. */
  display: string;
  size: number;
  contentHash: string;
  clientModified: number;
  serverModified: number;
}

export interface FileNode {
  tag: 'file';
  id: string;
  display: string;
  rev: string;
}

export interface FolderNode {
  tag: 'folder';
  id: string;
  display: string;
}

export type Node = FileNode | FolderNode;

export interface Change {
  seq: number;
  lower: string;
  display: string;
}

/** What was last at a path that no longer exists (for include_deleted and DeletedMetadata). */
export interface Tombstone {
  display: string;
  tag: 'file' | 'folder';
}

/** Serialized form, persisted as JSON. */
export interface NamespaceState {
  version: 1;
  id: string;
  epoch: string;
  seq: number;
  revCounter: number;
  /** Oldest change kept; cursors older than this get `reset`. */
  firstSeq: number;
  nodes: Node[];
  revisions: FileRevision[];
  tombstones: [string, Tombstone][];
  changes: Change[];
}

/** Revisions kept per file: enough for `rev:` reads and `update` conflicts, bounded so storage stays bounded. */
export const MAX_REVISIONS_PER_FILE = 10;
/** Changes kept for cursors; an older cursor is answered with `reset`, as Dropbox does for stale cursors. */
export const MAX_CHANGES = 10_000;
/** Deleted paths remembered for include_deleted; the oldest are forgotten first. */
export const MAX_TOMBSTONES = 10_000;

export class Namespace {
  readonly nodes = new Map<string, Node>();
  /** Folder lower path ("" = root) → lower paths of its direct children. */
  readonly children = new Map<string, Set<string>>([['', new Set()]]);
  readonly byId = new Map<string, string>();
  readonly revisions = new Map<string, FileRevision>();
  /** File id → its revisions, oldest first. */
  readonly history = new Map<string, string[]>();
  readonly tombstones = new Map<string, Tombstone>();
  changes: Change[] = [];
  seq = 0;
  firstSeq = 1;
  revCounter = 0;
  /** Called after every change (longpoll waiters). */
  readonly listeners = new Set<() => void>();

  constructor(
    readonly id: string,
    /** Changes on reset: cursors from before a reset are refused. */
    readonly epoch: string = randomBytes(6).toString('hex'),
    /** Called with each blob hash a new revision uses or a pruned revision releases. */
    readonly refs: { ref(hash: string): void; unref(hash: string): void } = { ref() {}, unref() {} },
  ) {}

  // ---- reading ----

  get(path: string): Node | undefined {
    return this.nodes.get(path);
  }

  revision(rev: string): FileRevision | undefined {
    return this.revisions.get(rev);
  }

  fileRevision(node: FileNode): FileRevision {
    const r = this.revisions.get(node.rev);
    if (!r) throw new Error(`revision ${node.rev} of ${node.display} is missing`);
    return r;
  }

  /** Lower paths under `path` (not including it), parents before children. */
  descendants(path: string): string[] {
    const out: string[] = [];
    const walk = (p: string) => {
      for (const child of this.children.get(p) ?? []) {
        out.push(child);
        walk(child);
      }
    };
    walk(path);
    return out.sort();
  }

  /** The nearest existing ancestor of `path` that is a file, if any (a write below it conflicts: file_ancestor). */
  fileAncestor(path: string): string | undefined {
    for (let p = parentOf(path); p !== ''; p = parentOf(p)) {
      if (this.nodes.get(p)?.tag === 'file') return p;
    }
    return undefined;
  }

  /** Display path for a lower-case target: existing ancestors keep their case, new components take `wanted`'s. */
  displayFor(path: string, wanted: string): string {
    const lowerParts = path.split('/');
    const wantedParts = wanted.split('/');
    let display = '';
    let at = '';
    for (let i = 1; i < lowerParts.length; i++) {
      at += `/${lowerParts[i]}`;
      const existing = this.nodes.get(at);
      display = existing ? existing.display : `${display}/${wantedParts[i] ?? lowerParts[i]}`;
    }
    return display;
  }

  usedBytes(): number {
    let total = 0;
    for (const node of this.nodes.values()) if (node.tag === 'file') total += this.fileRevision(node).size;
    return total;
  }

  // ---- writing ----

  newId(): string {
    return `id:${randomBytes(16).toString('base64url')}`;
  }

  newRev(): string {
    this.revCounter += 1;
    // Dropbox revs are lower-case hex, at least 9 characters (files.stone `Rev`).
    return `${this.revCounter.toString(16).padStart(9, '0')}${randomBytes(3).toString('hex')}`;
  }

  /** Creates missing folders along `display`'s parent chain. Caller checked there is no file ancestor. */
  ensureParents(display: string): void {
    const parts = display.split('/');
    let at = '';
    for (let i = 1; i < parts.length - 1; i++) {
      at += `/${parts[i]}`;
      if (!this.nodes.has(lower(at))) this.insert({ tag: 'folder', id: this.newId(), display: this.displayFor(lower(at), at) });
    }
  }

  /** Adds a node at lower(node.display); its parent must exist. Logs the change. */
  insert(node: Node): void {
    const path = lower(node.display);
    this.nodes.set(path, node);
    this.byId.set(node.id, path);
    this.tombstones.delete(path);
    let siblings = this.children.get(parentOf(path));
    if (!siblings) this.children.set(parentOf(path), (siblings = new Set()));
    siblings.add(path);
    if (node.tag === 'folder' && !this.children.has(path)) this.children.set(path, new Set());
    this.log(path, node.display);
  }

  /** Records a new revision of a file (new or existing id) and makes it current at `display`. */
  putFile(
    id: string,
    display: string,
    content: { size: number; contentHash: string },
    clientModified: number,
    serverModified: number,
  ): FileRevision {
    const revision: FileRevision = { rev: this.newRev(), id, display, ...content, clientModified, serverModified };
    this.addRevision(revision);
    const path = lower(display);
    if (this.nodes.has(path)) {
      // Overwrite in place: same id, same case as before (Dropbox keeps the existing name).
      const node = this.nodes.get(path) as FileNode;
      node.rev = revision.rev;
      revision.display = node.display;
      this.log(path, node.display);
    } else {
      this.insert({ tag: 'file', id, display, rev: revision.rev });
    }
    return revision;
  }

  addRevision(revision: FileRevision): void {
    this.revisions.set(revision.rev, revision);
    this.refs.ref(revision.contentHash);
    const list = this.history.get(revision.id) ?? [];
    list.push(revision.rev);
    this.history.set(revision.id, list);
    while (list.length > MAX_REVISIONS_PER_FILE) {
      const old = this.revisions.get(list.shift() as string);
      if (old) {
        this.revisions.delete(old.rev);
        this.refs.unref(old.contentHash);
      }
    }
  }

  /** Removes `path` and everything under it; returns the removed nodes, parents first. */
  remove(path: string): Node[] {
    const paths = [path, ...this.descendants(path)];
    const removed: Node[] = [];
    for (const p of paths) {
      const node = this.nodes.get(p);
      if (!node) continue;
      removed.push(node);
      this.nodes.delete(p);
      this.byId.delete(node.id);
      this.children.delete(p);
      this.children.get(parentOf(p))?.delete(p);
      this.tombstones.delete(p);
      this.tombstones.set(p, { display: node.display, tag: node.tag });
      if (this.tombstones.size > MAX_TOMBSTONES) this.tombstones.delete(this.tombstones.keys().next().value as string);
      this.log(p, node.display);
    }
    return removed;
  }

  log(path: string, display: string): void {
    this.seq += 1;
    this.changes.push({ seq: this.seq, lower: path, display });
    if (this.changes.length > MAX_CHANGES) {
      const drop = this.changes.length - MAX_CHANGES;
      this.changes = this.changes.slice(drop);
      this.firstSeq = this.changes[0]?.seq ?? this.seq + 1;
    }
    for (const listener of this.listeners) listener();
  }

  /** A free name next to `path` for autorename: "doc (2).txt", or "doc (conflicted copy).txt" for update. */
  freeName(path: string, display: string, style: 'number' | 'conflicted', isFolder: boolean): string {
    const name = baseName(display);
    const dot = isFolder ? -1 : name.lastIndexOf('.');
    const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
    const parentDisplay = display.slice(0, display.length - name.length - 1);
    const parent = parentOf(path);
    for (let i = style === 'number' ? 2 : 1; ; i++) {
      const suffix = style === 'number' ? ` (${i})` : i === 1 ? ' (conflicted copy)' : ` (conflicted copy ${i})`;
      const candidate = `${stem}${suffix}${ext}`;
      if (!this.nodes.has(`${parent}/${lower(candidate)}`)) return `${parentDisplay}/${candidate}`;
    }
  }

  // ---- persistence ----

  toJSON(): NamespaceState {
    return {
      version: 1,
      id: this.id,
      epoch: this.epoch,
      seq: this.seq,
      revCounter: this.revCounter,
      firstSeq: this.firstSeq,
      nodes: [...this.nodes.values()],
      revisions: [...this.history.values()].flat().map((rev) => this.revisions.get(rev) as FileRevision),
      tombstones: [...this.tombstones],
      changes: this.changes,
    };
  }

  static fromJSON(state: NamespaceState, refs: Namespace['refs']): Namespace {
    if (state.version !== 1) throw new Error(`unsupported namespace state version ${String(state.version)}`);
    const ns = new Namespace(state.id, state.epoch, refs);
    for (const revision of state.revisions) ns.addRevision(revision);
    // Re-insert parents first; insert() would log, so the log is restored afterwards.
    for (const node of [...state.nodes].sort((a, b) => lower(a.display).localeCompare(lower(b.display)))) {
      const path = lower(node.display);
      ns.nodes.set(path, node);
      ns.byId.set(node.id, path);
      let siblings = ns.children.get(parentOf(path));
      if (!siblings) ns.children.set(parentOf(path), (siblings = new Set()));
      siblings.add(path);
      if (node.tag === 'folder' && !ns.children.has(path)) ns.children.set(path, new Set());
    }
    for (const [path, t] of state.tombstones) ns.tombstones.set(path, t);
    ns.changes = state.changes;
    ns.seq = state.seq;
    ns.firstSeq = state.firstSeq;
    ns.revCounter = state.revCounter;
    return ns;
  }
}

