/** Small argument checks shared by the core's route modules; reasons worded like Dropbox's 400s (https://www.dropbox.com/developers/documentation/http/documentation#error-handling). */
import { BadInputError } from '../route-module.js';

export function objectArg(arg: unknown, known: string[]): Record<string, unknown> {
  if (arg === null || typeof arg !== 'object' || Array.isArray(arg)) {
    throw new BadInputError('request body: expected object, got ' + (arg === null ? 'null' : Array.isArray(arg) ? 'list' : typeof arg));
  }
  for (const k of Object.keys(arg)) {
    if (!known.includes(k)) throw new BadInputError(`request body: unknown field "${k}"`);
  }
  return arg as Record<string, unknown>;
}

export function optString(o: Record<string, unknown>, field: string, max = Infinity): string | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new BadInputError(`request body: ${field}: expected string, got ${typeof v}`);
  if (v.length > max) throw new BadInputError(`request body: ${field}: '${v.slice(0, 20)}...' length ${v.length} exceeds max length ${max}`);
  return v;
}

export function optBool(o: Record<string, unknown>, field: string, dflt: boolean): boolean {
  const v = o[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new BadInputError(`request body: ${field}: expected boolean, got ${typeof v}`);
  return v;
}

export function optInt(o: Record<string, unknown>, field: string, dflt: number, min: number, max: number): number {
  const v = o[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new BadInputError(`request body: ${field}: expected integer, got ${typeof v}`);
  if (v < min) throw new BadInputError(`request body: ${field}: ${v} is less than ${min}`);
  if (v > max) throw new BadInputError(`request body: ${field}: ${v} is greater than ${max}`);
  return v;
}

/** A void union member given as `"x"` or `{".tag": "x"}` (https://www.dropbox.com/developers/documentation/http/documentation). */
export function optTag(o: Record<string, unknown>, field: string): string | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && !Array.isArray(v) && typeof (v as Record<string, unknown>)['.tag'] === 'string') {
    return (v as Record<string, unknown>)['.tag'] as string;
  }
  throw new BadInputError(`request body: ${field}: expected union, got ${Array.isArray(v) ? 'list' : typeof v}`);
}

/** Opaque cursors: base64url JSON with a kind prefix, so a cursor of one route is refused by another. */
export function encodeCursor(kind: string, value: unknown): string {
  return `${kind}${Buffer.from(JSON.stringify(value)).toString('base64url')}`;
}

export function decodeCursor<T>(kind: string, cursor: unknown): T | undefined {
  if (typeof cursor !== 'string' || !cursor.startsWith(kind)) return undefined;
  try {
    return JSON.parse(Buffer.from(cursor.slice(kind.length), 'base64url').toString('utf8')) as T;
  } catch {
    return undefined;
  }
}
