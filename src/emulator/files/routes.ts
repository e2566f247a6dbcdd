/**
 * The files routes: argument decoding, calling the file system, and wrapping its failures in each route's error
 * union (files.stone; https://www.dropbox.com/developers/documentation/http/documentation). Route attributes (host, style, auth, scope, allow_app_folder_app,
 * select_admin_mode) are copied from files.stone.
 */
import { ContentHasher } from '../../dropbox/content-hash.js';
import { BadInputError, RouteError, type RouteContext, type RouteDef, type RouteResult } from '../route-module.js';
import { Args, argPrefix, parseTimestamp } from './args.js';
import { BatchedWriter, type BlobStore, type Staging } from './blobs.js';
import {
  FileSystem,
  LookupFailure,
  RelocationFailure,
  WriteFailure,
  type CommitOptions,
  type Stone,
  type Target,
  type View,
  type WriteModeArg,
} from './fs.js';
import { CursorReset, continueListing, latestCursor, listFolder, longpoll, type ListOptions } from './listing.js';
import type { FileRevision } from './namespace.js';
import { MalformedPathError, parsePathArg, type PathAlias, type PathRef } from './paths.js';
import { receive, SessionFailure, UploadSessions } from './sessions.js';

const REV_PATTERN = '[0-9a-f]+';
const tag = (t: string): Stone => ({ '.tag': t });
const malformed = (): Stone => tag('malformed_path');

interface Deps {
  fs: FileSystem;
  blobs: BlobStore;
  sessions: UploadSessions;
}

interface ParsedCommit {
  /** `null`: the path passed the pattern but is malformed; the commit fails with WriteError.malformed_path
   * only after the body was received, so the bytes stay in a session like any other failed commit. */
  path: PathRef | null;
  opts: CommitOptions;
}

type Attrs = Omit<RouteDef, 'name' | 'handler'>;
const RPC_READ: Attrs = { host: 'api', style: 'rpc', auth: 'user', scope: 'files.metadata.read', allowAppFolder: true, selectAdminMode: 'whole_team' };
const RPC_WRITE: Attrs = { host: 'api', style: 'rpc', auth: 'user', scope: 'files.content.write', allowAppFolder: true, selectAdminMode: 'team_admin' };
const UPLOAD: Attrs = { host: 'content', style: 'upload', auth: 'user', scope: 'files.content.write', allowAppFolder: true, selectAdminMode: 'team_admin' };

export function filesRoutes({ fs, blobs, sessions }: Deps): RouteDef[] {
  const view = (ctx: RouteContext): View => {
    const root = ctx.caller.root;
    if (!root) throw new BadInputError('This API function needs a user: call it with a user access token.');
    return fs.view(root);
  };

  /** Parses a path argument; a malformed one becomes `onMalformed`'s route error. */
  const pathArg = (args: Args, field: string, alias: PathAlias, onMalformed: (e: Stone) => Stone): PathRef => {
    try {
      return parsePathArg(args.string(field), alias, args.path(field), args.prefix);
    } catch (e) {
      if (e instanceof MalformedPathError) throw new RouteError(onMalformed(malformed()));
      throw e;
    }
  };
  const asPath = (e: Stone): Stone => ({ '.tag': 'path', path: e });

  /** Runs a file-system step, turning its failures into the route's union members. */
  const guard = <T>(step: () => T, map: { lookup?: (e: Stone) => Stone; write?: (e: Stone) => Stone }): T => {
    try {
      return step();
    } catch (e) {
      if (e instanceof LookupFailure && map.lookup) throw new RouteError(map.lookup(e.error));
      if (e instanceof WriteFailure && map.write) throw new RouteError(map.write(e.error));
      if (e instanceof RelocationFailure) throw new RouteError(e.error);
      throw e;
    }
  };

  const contentHashArg = (args: Args): string | undefined => {
    const v = args.string('content_hash', true);
    if (v !== undefined && v.length !== 64) {
      throw args.fail(`'${v}' must be ${v.length < 64 ? 'at least' : 'at most'} 64 characters, got ${v.length}`, args.path('content_hash'));
    }
    return v;
  };

  const commitArg = (args: Args): ParsedCommit => {
    let path: PathRef | null;
    try {
      path = parsePathArg(args.string('path'), 'WritePathOrId', args.path('path'), args.prefix);
    } catch (e) {
      if (!(e instanceof MalformedPathError)) throw e;
      path = null;
    }
    const mode = args.union('mode', { add: 'void', overwrite: 'void', update: 'string' }, 'add') as { tag: string; value?: string };
    if (mode.tag === 'update' && (!/^[0-9a-f]+$/.test(mode.value ?? '') || (mode.value ?? '').length < 9)) {
      throw args.fail(`'${mode.value ?? ''}' did not match pattern '${REV_PATTERN}'`, args.path('mode.update'));
    }
    const writeMode: WriteModeArg = mode.tag === 'update' ? { tag: 'update', rev: mode.value as string } : { tag: mode.tag as 'add' | 'overwrite' };
    args.bool('mute', false);
    return {
      path,
      opts: {
        mode: writeMode,
        autorename: args.bool('autorename', false),
        strictConflict: args.bool('strict_conflict', false),
        clientModified: parseTimestamp(args, 'client_modified'),
      },
    };
  };

  const cursorArg = (args: Args) => ({
    sessionId: args.string('session_id'),
    offset: args.int('offset', 0, Number.MAX_SAFE_INTEGER),
  });

  /** Write target for a commit; an unknown `id:` is reported as malformed_path (WriteError has no not_found). */
  const writeTarget = (v: View, ref: PathRef | null): Target => {
    if (ref === null) throw new WriteFailure(malformed());
    try {
      return fs.target(v, ref);
    } catch (e) {
      if (e instanceof LookupFailure) throw new WriteFailure(malformed());
      throw e;
    }
  };

  /**
   * Commits staged bytes as a file following WriteMode. The staging area is discarded only once the file is
   * written: a failed commit leaves the bytes for a retry (UploadSessionFinishError.path: "Data has already been
   * appended to the upload session") or for UploadWriteFailed's session. `consumed` runs after a success.
   */
  const commitStaged = async (
    v: View,
    commit: ParsedCommit,
    staging: Staging,
    content: { size: number; contentHash: string },
    consumed: () => void,
  ): Promise<FileRevision> => {
    let decision = fs.decideFileCommit(v, writeTarget(v, commit.path), content.contentHash, commit.opts);
    let revision: FileRevision;
    if (decision.kind === 'noop') {
      revision = fs.applyFileCommit(v, decision, content, commit.opts);
    } else {
      await blobs.commit(staging, content.contentHash, content.size);
      // Hold a reference while deciding again (another request may have changed the target meanwhile), so the
      // blob goes away if nothing ends up using it; the staged bytes are still there for a retry.
      blobs.ref(content.contentHash);
      try {
        decision = fs.decideFileCommit(v, writeTarget(v, commit.path), content.contentHash, commit.opts);
        revision = fs.applyFileCommit(v, decision, content, commit.opts);
      } finally {
        blobs.unref(content.contentHash);
      }
    }
    await staging.discard();
    consumed();
    return revision;
  };

  const sessionError = (e: unknown, wrapLookup: boolean): never => {
    if (e instanceof SessionFailure) {
      throw new RouteError(wrapLookup && e.lookup ? { '.tag': 'lookup_failed', lookup_failed: e.error } : e.error);
    }
    throw e;
  };

  const listOptions = (args: Args): ListOptions => ({
    recursive: args.bool('recursive', false),
    includeDeleted: args.bool('include_deleted', false),
    limit: args.optInt('limit', 1, 2000),
  });

  /** The folder a list_folder argument names, namespace-absolute; not_found / not_folder otherwise. */
  const listedFolder = (v: View, ref: PathRef): string =>
    guard(
      () => {
        const target = fs.target(v, ref);
        if (target.path === v.root) return target.path;
        const node = v.ns.get(target.path);
        if (!node) throw new LookupFailure(tag('not_found'));
        if (node.tag !== 'folder') throw new LookupFailure(tag('not_folder'));
        return target.path;
      },
      { lookup: asPath },
    );

  const listArgs = (ctx: RouteContext) => {
    const args = new Args(ctx.arg, argPrefix(ctx, 'rpc'));
    if (args.struct('shared_link', true)) {
      throw args.fail('shared links are not supported by the dropkey emulator', 'shared_link');
    }
    return { args, ref: pathArg(args, 'path', 'PathROrId', asPath), opts: listOptions(args) };
  };

  const finishOne = async (v: View, args: Args, ctx: RouteContext, batch: boolean): Promise<Stone> => {
    const cursor = cursorArg(args.struct('cursor'));
    const commit = commitArg(args.struct('commit'));
    const contentHash = contentHashArg(args);
    return sessions.exclusive(cursor.sessionId, async () => {
      let data: Awaited<ReturnType<UploadSessions['finishData']>>;
      try {
        // finish_batch needs every session closed first (files.stone upload_session/finish_batch:2).
        if (batch && !sessions.get(v.ns.id, cursor.sessionId).closed) throw new SessionFailure(tag('not_closed'), true);
        data = await sessions.finishData(v.ns.id, cursor, contentHash, ctx);
      } catch (e) {
        return sessionError(e, true);
      }
      const { session, size, hash } = data;
      // An append racing the commit gets incorrect_offset instead of writing into bytes being committed.
      session.busy = true;
      try {
        const revision = await commitStaged(v, commit, session.staging, { size, contentHash: hash }, () => sessions.complete(session));
        return fs.fileMetadata(v, revision);
      } catch (e) {
        if (e instanceof WriteFailure) throw new RouteError(asPath(e.error));
        throw e;
      } finally {
        session.busy = false;
      }
    });
  };

  const json = (value: unknown): RouteResult => ({ kind: 'json', value });

  const routes: RouteDef[] = [
    {
      name: 'files/list_folder',
      ...RPC_READ,
      auth: 'app, user',
      handler(ctx) {
        const { ref, opts } = listArgs(ctx);
        const v = view(ctx);
        return json(listFolder(fs, v, listedFolder(v, ref), opts));
      },
    },
    {
      name: 'files/list_folder/continue',
      ...RPC_READ,
      auth: 'app, user',
      handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'rpc'));
        const cursor = args.pattern('cursor', '.*', 1) as string;
        try {
          return json(continueListing(fs, view(ctx), cursor));
        } catch (e) {
          if (e instanceof CursorReset) throw new RouteError(tag('reset'));
          throw e;
        }
      },
    },
    {
      name: 'files/list_folder/get_latest_cursor',
      ...RPC_READ,
      handler(ctx) {
        const { ref, opts } = listArgs(ctx);
        const v = view(ctx);
        return json({ cursor: latestCursor(v, listedFolder(v, ref), opts) });
      },
    },
    {
      name: 'files/list_folder/longpoll',
      host: 'notify',
      style: 'rpc',
      auth: 'noauth',
      scope: 'files.metadata.read',
      allowAppFolder: true,
      selectAdminMode: 'whole_team',
      async handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'rpc'));
        const cursor = args.pattern('cursor', '.*', 1) as string;
        const timeout = args.optInt('timeout', 30, 480) ?? 30;
        try {
          return json(await longpoll(fs, cursor, timeout, ctx.signal));
        } catch (e) {
          if (e instanceof CursorReset) throw new RouteError(tag('reset'));
          throw e;
        }
      },
    },
    {
      name: 'files/get_metadata',
      ...RPC_READ,
      handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'rpc'));
        const ref = pathArg(args, 'path', 'ReadPath', asPath);
        const includeDeleted = args.bool('include_deleted', false);
        const v = view(ctx);
        return json(
          guard(() => {
            try {
              const found = fs.lookup(v, ref);
              if ('revision' in found) return fs.fileMetadata(v, found.revision, found.revision.display, true);
              return fs.metadata(v, found.node, true);
            } catch (e) {
              // include_deleted: "DeletedMetadata will be returned for deleted file or folder" (files.stone).
              if (e instanceof LookupFailure && includeDeleted && ref.kind !== 'rev') {
                const target = fs.target(v, ref);
                const tomb = v.ns.tombstones.get(target.path);
                if (tomb && !v.ns.get(target.path)) return fs.deletedMetadata(v, tomb.display);
              }
              throw e;
            }
          }, { lookup: asPath }),
        );
      },
    },
    {
      name: 'files/create_folder_v2',
      ...RPC_WRITE,
      handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'rpc'));
        const ref = pathArg(args, 'path', 'WritePath', asPath);
        const autorename = args.bool('autorename', false);
        const v = view(ctx);
        const node = guard(() => fs.createFolder(v, writeTarget(v, ref), autorename), { write: asPath, lookup: asPath });
        return json({ metadata: fs.metadata(v, node, false) });
      },
    },
    {
      name: 'files/delete_v2',
      ...RPC_WRITE,
      handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'rpc'));
        const ref = pathArg(args, 'path', 'WritePathOrId', (e) => ({ '.tag': 'path_lookup', path_lookup: e }));
        const parentRev = args.pattern('parent_rev', REV_PATTERN, 9, true);
        const v = view(ctx);
        const metadata = guard(() => fs.delete(v, ref, parentRev), {
          lookup: (e) => ({ '.tag': 'path_lookup', path_lookup: e }),
          write: (e) => ({ '.tag': 'path_write', path_write: e }),
        });
        return json({ metadata });
      },
    },
    ...(['move', 'copy'] as const).map(
      (op): RouteDef => ({
        name: `files/${op}_v2`,
        ...RPC_WRITE,
        handler(ctx) {
          const args = new Args(ctx.arg, argPrefix(ctx, 'rpc'));
          const from = pathArg(args, 'from_path', 'WritePathOrId', (e) => ({ '.tag': 'from_lookup', from_lookup: e }));
          const to = pathArg(args, 'to_path', 'WritePathOrId', (e) => ({ '.tag': 'to', to: e }));
          args.bool('allow_shared_folder', false);
          args.bool('allow_ownership_transfer', false);
          const autorename = args.bool('autorename', false);
          const v = view(ctx);
          return json({ metadata: guard(() => fs.relocate(v, from, to, { copy: op === 'copy', autorename }), {}) });
        },
      }),
    ),
    {
      name: 'files/upload',
      ...UPLOAD,
      async handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'upload'));
        const commit = commitArg(args);
        const contentHash = contentHashArg(args);
        const v = view(ctx);
        const staging = await blobs.stage();
        const hasher = new ContentHasher();
        let size = 0;
        const writer = new BatchedWriter(staging, 0);
        try {
          await receive(ctx, async (chunk) => {
            await writer.write(chunk);
            hasher.update(chunk);
            size += chunk.length;
          });
          await writer.flush();
        } catch (e) {
          await staging.discard();
          return sessionError(e, false);
        }
        const hash = hasher.copy().digest();
        if (contentHash !== undefined && contentHash !== hash) {
          await staging.discard();
          throw new RouteError(tag('content_hash_mismatch'));
        }
        try {
          const revision = await commitStaged(v, commit, staging, { size, contentHash: hash }, () => {});
          return json(fs.fileMetadata(v, revision));
        } catch (e) {
          if (!(e instanceof WriteFailure)) {
            await staging.discard();
            throw e;
          }
          // The bytes stay in an upload session the client may finish elsewhere (UploadWriteFailed).
          const sessionId = await sessions.adopt(v.ns.id, staging, size, hasher);
          throw new RouteError({ '.tag': 'path', reason: e.error, upload_session_id: sessionId });
        }
      },
    },
    {
      name: 'files/upload_session/start',
      ...UPLOAD,
      async handler(ctx) {
        const args = new Args(ctx.arg ?? {}, argPrefix(ctx, 'upload'));
        const close = args.bool('close', false);
        const type = args.union('session_type', { sequential: 'void', concurrent: 'void' }, 'sequential');
        const contentHash = contentHashArg(args);
        const v = view(ctx);
        try {
          const id = await sessions.start(v.ns.id, { concurrent: type?.tag === 'concurrent', close, contentHash }, ctx);
          return json({ session_id: id });
        } catch (e) {
          return sessionError(e, false);
        }
      },
    },
    {
      name: 'files/upload_session/append_v2',
      ...UPLOAD,
      async handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'upload'));
        const cursor = cursorArg(args.struct('cursor'));
        const close = args.bool('close', false);
        const contentHash = contentHashArg(args);
        const v = view(ctx);
        try {
          await sessions.append(v.ns.id, cursor, close, contentHash, ctx);
        } catch (e) {
          sessionError(e, false);
        }
        return json(null);
      },
    },
    {
      // Deprecated v1: the argument is the cursor itself, and it never closes the session.
      name: 'files/upload_session/append',
      ...UPLOAD,
      async handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'upload'));
        const cursor = cursorArg(args);
        const v = view(ctx);
        try {
          await sessions.append(v.ns.id, cursor, false, undefined, ctx);
        } catch (e) {
          sessionError(e, false);
        }
        return json(null);
      },
    },
    {
      name: 'files/upload_session/finish',
      ...UPLOAD,
      async handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'upload'));
        return json(await finishOne(view(ctx), args, ctx, false));
      },
    },
    {
      name: 'files/upload_session/start_batch',
      ...RPC_WRITE,
      async handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'rpc'));
        const type = args.union('session_type', { sequential: 'void', concurrent: 'void' }, 'sequential');
        const count = args.int('num_sessions', 1, 1000);
        const v = view(ctx);
        const ids: string[] = [];
        for (let i = 0; i < count; i++) ids.push((await sessions.create(v.ns.id, type?.tag === 'concurrent')).id);
        return json({ session_ids: ids });
      },
    },
    {
      name: 'files/upload_session/finish_batch_v2',
      ...RPC_WRITE,
      async handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'rpc'));
        const list = args.list('entries', 1000);
        const entries = list.map((entry, i) => new Args(entry, args.prefix, `entries[${i}].`));
        const v = view(ctx);
        const noBody: RouteContext = { ...ctx, body: null, contentLength: 0 };
        const results: Stone[] = [];
        // Synchronous, in order: each entry succeeds or fails on its own (UploadSessionFinishBatchResultEntry).
        for (const entry of entries) {
          try {
            results.push({ '.tag': 'success', ...(await finishOne(v, entry, noBody, true)) });
          } catch (e) {
            if (!(e instanceof RouteError)) throw e;
            results.push({ '.tag': 'failure', failure: e.error });
          }
        }
        return json({ entries: results });
      },
    },
    {
      name: 'files/download',
      host: 'content',
      style: 'download',
      auth: 'user',
      scope: 'files.content.read',
      allowAppFolder: true,
      selectAdminMode: 'whole_team',
      handler(ctx) {
        const args = new Args(ctx.arg, argPrefix(ctx, 'download'));
        const ref = pathArg(args, 'path', 'ReadPath', asPath);
        const rev = args.pattern('rev', REV_PATTERN, 9, true);
        const v = view(ctx);
        const revision = guard(() => {
          if (rev !== undefined) {
            const r = fs.lookup(v, { kind: 'rev', rev });
            if ('revision' in r) return r.revision;
          }
          const found = fs.lookup(v, ref);
          if ('revision' in found) return found.revision;
          if (found.node.tag !== 'file') throw new LookupFailure(tag('not_file'));
          return v.ns.fileRevision(found.node);
        }, { lookup: asPath });
        const current = v.ns.get(v.ns.byId.get(revision.id) ?? '');
        const display = current?.tag === 'file' && current.rev === revision.rev ? current.display : revision.display;
        return {
          kind: 'download',
          result: fs.fileMetadata(v, revision, display),
          size: revision.size,
          open: (start, end) => blobs.open(revision.contentHash, start, end),
          etag: `"${revision.rev}"`,
        };
      },
    },
  ];
  return routes;
}
