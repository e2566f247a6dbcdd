/**
 * Dropbox path arguments: the spec's path aliases, how the server rejects malformed ones, and how a valid one
 * splits into what it names. Sources: https://www.dropbox.com/developers/documentation/http/documentation#error-handling (observed 400 texts), Dropbox docs: files routes "Paths & case",
 * files.stone aliases (PathROrId, ReadPath, WritePath, WritePathOrId).
 */
import { BadInputError } from '../route-module.js';

/** Spec path aliases, with their patterns exactly as the server prints them in 400 texts. */
export const PATH_PATTERNS = {
  PathROrId: '(/(.|[\\r\\n])*)?|id:.*|(ns:[0-9]+(/(.|[\\r\\n])*)?)',
  ReadPath: '(/(.|[\\r\\n])*|id:.*)|(rev:[0-9a-f]{9,})|(ns:[0-9]+(/(.|[\\r\\n])*)?)',
  WritePath: '(/(.|[\\r\\n])*)|(ns:[0-9]+(/(.|[\\r\\n])*)?)',
  WritePathOrId: '(/(.|[\\r\\n])*)|(ns:[0-9]+(/(.|[\\r\\n])*)?)|(id:.*)',
} as const;
export type PathAlias = keyof typeof PATH_PATTERNS;

const COMPILED = Object.fromEntries(
  Object.entries(PATH_PATTERNS).map(([k, p]) => [k, new RegExp(`^(?:${p})$`, 's')]),
) as Record<PathAlias, RegExp>;

/** What a syntactically valid path argument names. `components` keep the caller's case. */
export type PathRef =
  | { kind: 'path'; components: string[] }
  | { kind: 'id'; id: string; components: string[] }
  | { kind: 'ns'; namespaceId: string; components: string[] }
  | { kind: 'rev'; rev: string };

/** A path that passed the spec pattern but that Dropbox still refuses: a 409 `malformed_path`, not a 400. */
export class MalformedPathError extends Error {
  constructor() {
    super('malformed path');
    this.name = 'MalformedPathError';
  }
}

/**
 * Checks a path argument against its spec alias and returns what it names. `field` is the argument's name in
 * error texts ("path", "from_path", "commit.path"), `prefix` the argument's source ("request body: ").
 * Throws BadInputError (400) with Dropbox's wording or MalformedPathError (409 malformed_path).
 */
export function parsePathArg(value: string, alias: PathAlias, field: string, prefix: string): PathRef {
  const rootAllowed = alias === 'PathROrId';
  if (value === '/' && rootAllowed) {
    throw new BadInputError(`${prefix}${field}: Specify the root folder as an empty string rather than as "/".`);
  }
  if ((value === '' || value === '/') && !rootAllowed) {
    throw new BadInputError(`${prefix}${field}: The root folder is unsupported.`);
  }
  if (!COMPILED[alias].test(value)) {
    throw new BadInputError(`${prefix}${field}: '${value}' did not match pattern '${PATH_PATTERNS[alias]}'`);
  }
  if (value.startsWith('rev:')) return { kind: 'rev', rev: value.slice(4) };
  if (value.startsWith('id:')) {
    const slash = value.indexOf('/');
    const id = slash === -1 ? value : value.slice(0, slash);
    // FileId is `id:.+`, at least 4 characters (files.stone).
    if (id.length < 4) throw new MalformedPathError();
    return { kind: 'id', id, components: slash === -1 ? [] : splitComponents(value.slice(slash)) };
  }
  if (value.startsWith('ns:')) {
    const slash = value.indexOf('/');
    const namespaceId = value.slice(3, slash === -1 ? undefined : slash);
    return { kind: 'ns', namespaceId, components: slash === -1 ? [] : splitComponents(value.slice(slash)) };
  }
  return { kind: 'path', components: value === '' ? [] : splitComponents(value) };
}

/**
 * "/a/b" → ["a", "b"]. Dropbox refuses empty components ("//", a trailing "/"), "." and "..", and names with
 * trailing whitespace (https://www.dropbox.com/developers/documentation/http/documentation "no trailing slash or trailing whitespace") as malformed_path.
 */
function splitComponents(path: string): string[] {
  const parts = path.slice(1).split('/');
  for (const part of parts) {
    if (part === '' || part === '.' || part === '..' || /\s$/.test(part)) throw new MalformedPathError();
  }
  return parts;
}

/**
 * Names the Dropbox server will not store (WriteError.disallowed_name): the files its desktop client ignores
 * (help.dropbox.com "Files that won't sync": desktop.ini, thumbs.db, .ds_store, icon\r, .dropbox, .dropbox.attr).
 */
const DISALLOWED_NAMES = new Set(['desktop.ini', 'thumbs.db', '.ds_store', 'icon\r', '.dropbox', '.dropbox.attr']);

export function isDisallowedName(name: string): boolean {
  return DISALLOWED_NAMES.has(name.toLowerCase());
}

/**
 * Dropbox's case folding for path_lower. It lower-cases with Unicode rules; JavaScript's toLowerCase is the
 * closest available match (https://www.dropbox.com/developers/documentation/http/documentation: case-insensitive, case-preserving).
 */
export function lower(path: string): string {
  return path.toLowerCase();
}

/** Parent of a lower-case absolute path ("" for top-level entries). */
export function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/'));
}

/** Last component of an absolute path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** True when `path` is `ancestor` or lies under it ("" is the root and contains everything). */
export function isWithin(path: string, ancestor: string): boolean {
  return ancestor === '' || path === ancestor || path.startsWith(`${ancestor}/`);
}
