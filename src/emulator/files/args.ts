/**
 * Decoding of route arguments with the Stone server's wording, so a bad argument gets the 400 text Dropbox
 * would send. Wording from Stone's Python validators (dropbox-sdk-python stone_validators.py): "missing required
 * field 'x'", "expected integer, got string", "'v' did not match pattern 'p'", field paths joined with ".".
 * The emulator core prefixes `Error in call to API function "<route>": `; we add the argument's source.
 */
import { BadInputError, type RouteContext, type RouteDef } from '../route-module.js';

/** Where the argument came from, as Dropbox names it at the start of a 400 reason. */
export function argPrefix(ctx: RouteContext, style: RouteDef['style']): string {
  if (style === 'rpc') return 'request body: ';
  return ctx.headers.has('dropbox-api-arg') ? 'HTTP header "Dropbox-API-Arg": ' : 'URL parameter "arg": ';
}

/** Stone's generic_type_name for JSON values. */
function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'float';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  return 'dict';
}

/** Python's repr, as used by "%r is not a valid boolean". */
function repr(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (v === null) return 'None';
  return JSON.stringify(v);
}

/** Reads one struct-typed argument; every failure becomes BadInputError with the field path. */
export class Args {
  readonly #obj: Record<string, unknown>;

  constructor(
    value: unknown,
    readonly prefix: string,
    /** Field path of this struct inside the argument ("" at the top, "commit." inside). */
    readonly at = '',
  ) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw this.fail(`expected object, got ${typeName(value)}`, at.replace(/\.$/, ''));
    }
    this.#obj = value as Record<string, unknown>;
  }

  fail(message: string, field?: string): BadInputError {
    return new BadInputError(`${this.prefix}${field ? `${field}: ` : ''}${message}`);
  }

  /** Field path for error texts, e.g. "commit.path". */
  path(field: string): string {
    return `${this.at}${field}`;
  }

  #get(field: string, required: boolean): unknown {
    const v = this.#obj[field];
    if (v === undefined || v === null) {
      if (required) throw this.fail(`missing required field '${field}'`, this.at.replace(/\.$/, '') || undefined);
      return undefined;
    }
    return v;
  }

  string(field: string): string;
  string(field: string, optional: true): string | undefined;
  string(field: string, optional = false): string | undefined {
    const v = this.#get(field, !optional);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw this.fail(`'${String(v)}' expected to be a string, got ${typeName(v)}`, this.path(field));
    return v;
  }

  /** A string with the spec's min_length / pattern constraints. */
  pattern(field: string, pattern: string, minLength: number, optional = false): string | undefined {
    const v = optional ? this.string(field, true) : this.string(field);
    if (v === undefined) return undefined;
    if (v.length < minLength) throw this.fail(`'${v}' must be at least ${minLength} characters, got ${v.length}`, this.path(field));
    if (!new RegExp(`^(?:${pattern})$`, 's').test(v)) throw this.fail(`'${v}' did not match pattern '${pattern}'`, this.path(field));
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.#get(field, false);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw this.fail(`${repr(v)} is not a valid boolean`, this.path(field));
    return v;
  }

  int(field: string, min: number, max: number): number {
    return this.#int(field, min, max, true) as number;
  }

  optInt(field: string, min: number, max: number): number | undefined {
    return this.#int(field, min, max, false);
  }

  #int(field: string, min: number, max: number, required: boolean): number | undefined {
    const v = this.#get(field, required);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) throw this.fail(`expected integer, got ${typeName(v)}`, this.path(field));
    if (v < min || v > max) throw this.fail(`${v} is not within range [${min}, ${max}]`, this.path(field));
    return v;
  }

  struct(field: string): Args;
  struct(field: string, optional: true): Args | undefined;
  struct(field: string, optional = false): Args | undefined {
    const v = this.#get(field, !optional);
    if (v === undefined) return undefined;
    return new Args(v, this.prefix, `${this.at}${field}.`);
  }

  list(field: string, maxItems: number, minItems = 0): unknown[] {
    const v = this.#get(field, true);
    if (!Array.isArray(v)) throw this.fail(`${repr(v)} is not a valid list`, this.path(field));
    if (v.length > maxItems) throw this.fail(`list has more than ${maxItems} items`, this.path(field));
    if (v.length < minItems) throw this.fail(`list has fewer than ${minItems} items`, this.path(field));
    return v;
  }

  /**
   * A union argument: the bare tag string is accepted for void members, `{".tag": t, t: value}` for members
   * carrying a value (https://www.dropbox.com/developers/documentation/http/documentation). Returns the tag and the member's value.
   */
  union(field: string, tags: Record<string, 'void' | 'string'>, fallback?: string): { tag: string; value?: string } | undefined {
    const v = this.#get(field, fallback === undefined);
    if (v === undefined) return fallback === undefined ? undefined : { tag: fallback };
    const at = this.path(field);
    let tag: unknown;
    let member: unknown;
    if (typeof v === 'string') tag = v;
    else if (typeof v === 'object' && !Array.isArray(v)) {
      tag = (v as Record<string, unknown>)['.tag'];
      member = (v as Record<string, unknown>)[String(tag)];
      if (tag === undefined) throw this.fail(`missing '.tag' key`, at);
    } else throw this.fail(`expected string or object, got ${typeName(v)}`, at);
    if (typeof tag !== 'string' || !(tag in tags)) throw this.fail(`unknown tag '${String(tag)}'`, at);
    if (tags[tag] === 'void') return { tag };
    if (member === undefined || member === null) throw this.fail(`tag '${tag}' requires a value`, at);
    if (typeof member !== 'string') throw this.fail(`'${String(member)}' expected to be a string, got ${typeName(member)}`, `${at}.${tag}`);
    return { tag, value: member };
  }
}

/** common.DropboxTimestamp: "%Y-%m-%dT%H:%M:%SZ" (https://www.dropbox.com/developers/documentation/http/documentation). */
export function parseTimestamp(args: Args, field: string): number | undefined {
  const v = args.string(field, true);
  if (v === undefined) return undefined;
  const ms = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(v) ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(ms)) throw args.fail(`'${v}' does not match format '%Y-%m-%dT%H:%M:%SZ'`, args.path(field));
  return ms;
}

/** Formats epoch milliseconds as a DropboxTimestamp (whole seconds, UTC). */
export function formatTimestamp(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}
