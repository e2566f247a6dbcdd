/**
 * The emulated Dropbox file system: namespaces (created lazily), each caller's view of one (an app-folder app sees
 * only its folder), and the file operations with Dropbox's semantics (https://www.dropbox.com/developers/documentation/http/documentation: WriteMode, conflicts,
 * autorename, delete, move/copy, metadata shapes). Operations throw LookupFailure / WriteFailure carrying the
 * Stone JSON of LookupError / WriteError; routes wrap them in each route's own error union.
 *
 * State is saved after each change as one JSON file per namespace (atomic rename) when a data directory is set.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatTimestamp } from './args.js';
import type { BlobStore } from './blobs.js';
import { Namespace, type FileNode, type FileRevision, type Node, type NamespaceState } from './namespace.js';
import { isDisallowedName, isWithin, lower, type PathRef } from './paths.js';

export type Stone = Record<string, unknown>;

/** LookupError (files.stone), e.g. {".tag": "not_found"}. */
export class LookupFailure extends Error {
  constructor(readonly error: Stone) {
    super(`lookup failed: ${String(error['.tag'])}`);
  }
}

/** WriteError (files.stone), e.g. {".tag": "conflict", "conflict": {".tag": "file"}}. */
export class WriteFailure extends Error {
  constructor(readonly error: Stone) {
    super(`write failed: ${String(error['.tag'])}`);
  }
}

const tag = (t: string): Stone => ({ '.tag': t });
const conflict = (kind: 'file' | 'folder' | 'file_ancestor') => new WriteFailure({ '.tag': 'conflict', conflict: tag(kind) });
export const notFound = () => new LookupFailure(tag('not_found'));

/** What a caller sees: a namespace, rooted at its top or at an app folder. */
export interface View {
  ns: Namespace;
  /** Namespace-absolute lower path of the caller's root ("" or "/apps/my app"). */
  root: string;
  /** Display form of `root`. */
  rootDisplay: string;
}

/** A write target, namespace-absolute. */
export interface Target {
  path: string;
  display: string;
}

export type WriteModeArg = { tag: 'add' } | { tag: 'overwrite' } | { tag: 'update'; rev: string };

export interface CommitOptions {
  mode: WriteModeArg;
  autorename: boolean;
  strictConflict: boolean;
  clientModified: number | undefined;
}

/** The outcome of deciding a file commit, before any bytes are placed. */
type Decision = { kind: 'write'; target: Target; existing?: FileNode } | { kind: 'noop'; node: FileNode };

export class FileSystem {
  readonly #namespaces = new Map<string, Namespace>();
  readonly #metaDir: string | undefined;
  /** Pending longpolls, answered early on reset (changes: true, so the client finds its cursor reset) and close. */
  readonly waiters = new Set<(changed: boolean) => void>();

  constructor(
    readonly blobs: BlobStore,
    readonly now: () => number,
    dataDir?: string,
  ) {
    this.#metaDir = dataDir === undefined ? undefined : join(dataDir, 'namespaces');
  }

  /** Loads every saved namespace (data directory only). Call once, before serving. */
  load(): void {
    if (!this.#metaDir) return;
    mkdirSync(this.#metaDir, { recursive: true });
    for (const name of readdirSync(this.#metaDir)) {
      if (!name.endsWith('.json')) continue;
      const state = JSON.parse(readFileSync(join(this.#metaDir, name), 'utf8')) as NamespaceState;
      this.#namespaces.set(state.id, Namespace.fromJSON(state, this.blobs));
    }
  }

  namespace(id: string): Namespace {
    let ns = this.#namespaces.get(id);
    if (!ns) {
      ns = new Namespace(id, undefined, this.blobs);
      this.#namespaces.set(id, ns);
    }
    return ns;
  }

  /** An existing namespace (longpoll has no caller, only a cursor). */
  existing(id: string): Namespace | undefined {
    return this.#namespaces.get(id);
  }

  /** The caller's view; an app folder ("/Apps/My App") is created on first use. */
  view(root: { namespaceId: string; appFolder?: string }): View {
    const ns = this.namespace(root.namespaceId);
    if (!root.appFolder) return { ns, root: '', rootDisplay: '' };
    const path = lower(root.appFolder);
    if (!ns.get(path)) {
      ns.ensureParents(`${root.appFolder}/x`);
      this.save(ns);
    }
    return { ns, root: path, rootDisplay: (ns.get(path) as Node).display };
  }

  /** Saves a namespace's metadata atomically (write to a temporary file, then rename over). */
  save(ns: Namespace): void {
    if (!this.#metaDir) return;
    const file = join(this.#metaDir, `${ns.id}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(ns));
    renameSync(`${file}.tmp`, file);
  }

  /** Answers every pending longpoll now. */
  wake(changed: boolean): void {
    for (const waiter of [...this.waiters]) waiter(changed);
  }

  async reset(): Promise<void> {
    this.wake(true);
    this.#namespaces.clear();
    await this.blobs.clear();
    if (this.#metaDir) {
      rmSync(this.#metaDir, { recursive: true, force: true });
      mkdirSync(this.#metaDir, { recursive: true });
    }
  }

  usedBytes(namespaceId: string): number {
    return this.#namespaces.get(namespaceId)?.usedBytes() ?? 0;
  }

  // ---- resolving paths ----

  /** Namespace-absolute target for a path argument (the target need not exist). */
  target(view: View, ref: PathRef): Target {
    let base: Target;
    if (ref.kind === 'rev') throw notFound();
    if (ref.kind === 'id') {
      const path = view.ns.byId.get(ref.id);
      if (path === undefined || !isWithin(path, view.root)) throw notFound();
      base = { path, display: (view.ns.get(path) as Node).display };
    } else {
      if (ref.kind === 'ns' && ref.namespaceId !== view.ns.id) throw notFound();
      base = { path: view.root, display: view.rootDisplay };
    }
    for (const c of ref.components) {
      base = { path: `${base.path}/${lower(c)}`, display: `${base.display}/${c}` };
    }
    return { path: base.path, display: view.ns.displayFor(base.path, base.display) };
  }

  /** The node a read path names (throws not_found). `rev:` paths name a revision instead. */
  lookup(view: View, ref: PathRef): { path: string; node: Node } | { revision: FileRevision } {
    if (ref.kind === 'rev') {
      const revision = view.ns.revision(ref.rev);
      if (!revision) throw notFound();
      const current = view.ns.byId.get(revision.id);
      if (!isWithin(current ?? lower(revision.display), view.root)) throw notFound();
      return { revision };
    }
    const { path } = this.target(view, ref);
    const node = view.ns.get(path);
    if (!node || path === view.root) throw notFound();
    return { path, node };
  }

  // ---- metadata (https://www.dropbox.com/developers/documentation/http/documentation "Metadata"; `.tag` only where the declared type is Metadata, Dropbox HTTP docs: JSON) ----

  relative(view: View, display: string): { path_lower: string; path_display: string } {
    const shown = display.slice(view.rootDisplay.length);
    return { path_lower: lower(shown), path_display: shown };
  }

  fileMetadata(view: View, revision: FileRevision, display = revision.display, tagged = false): Stone {
    return {
      ...(tagged ? tag('file') : {}),
      name: display.slice(display.lastIndexOf('/') + 1),
      ...this.relative(view, display),
      id: revision.id,
      client_modified: formatTimestamp(revision.clientModified),
      server_modified: formatTimestamp(revision.serverModified),
      rev: revision.rev,
      size: revision.size,
      is_downloadable: true,
      content_hash: revision.contentHash,
    };
  }

  metadata(view: View, node: Node, tagged: boolean): Stone {
    if (node.tag === 'file') return this.fileMetadata(view, view.ns.fileRevision(node), node.display, tagged);
    return {
      ...(tagged ? tag('folder') : {}),
      name: node.display.slice(node.display.lastIndexOf('/') + 1),
      ...this.relative(view, node.display),
      id: node.id,
    };
  }

  deletedMetadata(view: View, display: string): Stone {
    return { ...tag('deleted'), name: display.slice(display.lastIndexOf('/') + 1), ...this.relative(view, display) };
  }

  // ---- writes ----

  /** Checks that a write to `target` is possible at all (name, ancestors); throws WriteFailure. */
  #checkWritable(view: View, target: Target): void {
    const name = target.display.slice(target.display.lastIndexOf('/') + 1);
    if (isDisallowedName(name)) throw new WriteFailure(tag('disallowed_name'));
    if (view.ns.fileAncestor(target.path) !== undefined) throw conflict('file_ancestor');
  }

  /**
   * Decides what committing content with `contentHash` at `target` does, following WriteMode's rules
   * (files.stone WriteMode, CommitInfo.strict_conflict): empty target → write; folder → conflict; identical
   * content → no-op unless strict; add → conflict; overwrite → write; update → write only on a matching rev.
   * autorename turns a conflict into a write at a free name.
   */
  decideFileCommit(view: View, target: Target, contentHash: string, opts: CommitOptions): Decision {
    const ns = view.ns;
    this.#checkWritable(view, target);
    const existing = ns.get(target.path);
    let clash: 'file' | 'folder' | undefined;
    if (!existing) {
      if (opts.mode.tag === 'update' && opts.strictConflict) clash = 'file';
    } else if (existing.tag === 'folder') {
      clash = 'folder';
    } else {
      const current = ns.fileRevision(existing);
      if (current.contentHash === contentHash && !opts.strictConflict) return { kind: 'noop', node: existing };
      if (opts.mode.tag === 'overwrite') return { kind: 'write', target, existing };
      if (opts.mode.tag === 'update' && opts.mode.rev === existing.rev) return { kind: 'write', target, existing };
      clash = 'file';
    }
    if (!clash) return { kind: 'write', target };
    if (!opts.autorename) throw conflict(clash);
    const style = opts.mode.tag === 'update' ? 'conflicted' : 'number';
    const display = ns.freeName(target.path, target.display, style, false);
    return { kind: 'write', target: { path: lower(display), display } };
  }

  /** Applies a write decision: a new revision at the target (parents created as needed). */
  applyFileCommit(view: View, decision: Decision, content: { size: number; contentHash: string }, opts: CommitOptions): FileRevision {
    const ns = view.ns;
    if (decision.kind === 'noop') return ns.fileRevision(decision.node);
    const now = this.now();
    const { target, existing } = decision;
    ns.ensureParents(target.display);
    const revision = ns.putFile(existing?.id ?? ns.newId(), target.display, content, opts.clientModified ?? now, now);
    this.save(ns);
    return revision;
  }

  createFolder(view: View, target: Target, autorename: boolean): Node {
    const ns = view.ns;
    this.#checkWritable(view, target);
    let display = target.display;
    const existing = ns.get(target.path);
    if (existing || target.path === view.root) {
      if (!autorename || !existing) throw conflict(existing?.tag ?? 'folder');
      display = ns.freeName(target.path, target.display, 'number', true);
    }
    ns.ensureParents(display);
    const node: Node = { tag: 'folder', id: ns.newId(), display };
    ns.insert(node);
    this.save(ns);
    return node;
  }

  /** Deletes a file or folder (recursively); returns its metadata from before the deletion. */
  delete(view: View, ref: PathRef, parentRev: string | undefined): Stone {
    const found = this.lookup(view, ref);
    if ('revision' in found) throw notFound();
    if (parentRev !== undefined) {
      // DeleteArg.parent_rev "does not support deleting a folder".
      if (found.node.tag !== 'file') throw new LookupFailure(tag('not_file'));
      if (found.node.rev !== parentRev) throw new WriteFailure({ '.tag': 'conflict', conflict: tag('file') });
    }
    const metadata = this.metadata(view, found.node, true);
    view.ns.remove(found.path);
    this.save(view.ns);
    return metadata;
  }

  /** Move or copy. Errors are RelocationError members, thrown as RelocationFailure. */
  relocate(view: View, from: PathRef, to: PathRef, opts: { copy: boolean; autorename: boolean }): Stone {
    const ns = view.ns;
    let source: { path: string; node: Node };
    try {
      const found = this.lookup(view, from);
      if ('revision' in found) throw notFound();
      source = found;
    } catch (e) {
      if (e instanceof LookupFailure) throw new RelocationFailure({ '.tag': 'from_lookup', from_lookup: e.error });
      throw e;
    }
    let target: Target;
    try {
      target = this.target(view, to);
    } catch (e) {
      if (e instanceof LookupFailure) throw new RelocationFailure({ '.tag': 'to', to: tag('malformed_path') });
      throw e;
    }
    const isFolder = source.node.tag === 'folder';
    if (isFolder && target.path !== source.path && isWithin(target.path, source.path)) {
      throw new RelocationFailure(tag('cant_move_folder_into_itself'));
    }
    const subtree = [source.path, ...(isFolder ? ns.descendants(source.path) : [])];
    if (subtree.length > 10_000) throw new RelocationFailure(tag('too_many_files'));
    try {
      this.#checkWritable(view, target);
      const existing = ns.get(target.path);
      if (existing || target.path === view.root) {
        if (!opts.autorename || !existing) throw conflict(existing?.tag ?? 'folder');
        const display = ns.freeName(target.path, target.display, 'number', isFolder);
        target = { path: lower(display), display };
      }
    } catch (e) {
      if (e instanceof WriteFailure) throw new RelocationFailure({ '.tag': 'to', to: e.error });
      throw e;
    }
    // Snapshot the subtree before changing anything: paths are re-rooted from source.display to target.display.
    const nodes = subtree.map((p) => ns.get(p) as Node);
    const rebase = (display: string) => `${target.display}${display.slice(source.node.display.length)}`;
    ns.ensureParents(target.display);
    if (!opts.copy) ns.remove(source.path);
    const now = this.now();
    let top: Node | undefined;
    for (const node of nodes) {
      const display = rebase(node.display);
      let placed: Node;
      if (node.tag === 'folder') {
        placed = { tag: 'folder', id: opts.copy ? ns.newId() : node.id, display };
        ns.insert(placed);
      } else if (opts.copy) {
        const r = ns.fileRevision(node);
        ns.putFile(ns.newId(), display, { size: r.size, contentHash: r.contentHash }, r.clientModified, now);
        placed = ns.get(lower(display)) as Node;
      } else {
        // A move keeps the file's id and revision (our choice; https://www.dropbox.com/developers/documentation/http/documentation does not say whether rev changes).
        placed = { tag: 'file', id: node.id, display, rev: node.rev };
        ns.insert(placed);
      }
      top ??= placed;
    }
    this.save(ns);
    return this.metadata(view, top as Node, true);
  }
}

/** A RelocationError member (files.stone), e.g. {".tag": "from_lookup", "from_lookup": {".tag": "not_found"}}. */
export class RelocationFailure extends Error {
  constructor(readonly error: Stone) {
    super(`relocation failed: ${String(error['.tag'])}`);
  }
}

