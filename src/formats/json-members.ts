/**
 * The members of a top-level JSON object with their places in the text, so one member can be replaced or added
 * while every other byte of the file stays as it was (JSON.stringify of the whole file would reformat the rest).
 */
import { badFile } from './text.js';

export interface JsonMember {
  key: string;
  value: unknown;
  /** Offset of the key's opening quote. */
  keyStart: number;
  valueStart: number;
  /** Offset just past the value. */
  valueEnd: number;
}

export interface JsonObjectText {
  text: string;
  /** Offset of `{` and of `}`. */
  open: number;
  close: number;
  members: JsonMember[];
}

/** Parses `text` as a JSON object (throws for anything else) and locates its members. */
export function parseJsonObject(text: string, what: string): JsonObjectText {
  let whole: unknown;
  try {
    whole = JSON.parse(text);
  } catch (e) {
    throw badFile(what, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof whole !== 'object' || whole === null || Array.isArray(whole)) throw badFile(what, 'the file must hold one JSON object');
  // JSON.parse accepted the text, so the scanner below only has to find boundaries, not to validate.
  let i = skipWs(text, 0);
  const open = i;
  i++;
  const members: JsonMember[] = [];
  for (;;) {
    i = skipWs(text, i);
    if (text[i] === '}') break;
    if (text[i] === ',') {
      i = skipWs(text, i + 1);
    }
    const keyStart = i;
    const keyEnd = skipString(text, i);
    const key = JSON.parse(text.slice(keyStart, keyEnd)) as string;
    i = skipWs(text, keyEnd) + 1; // past ':'
    const valueStart = skipWs(text, i);
    const valueEnd = skipValue(text, valueStart);
    members.push({ key, value: JSON.parse(text.slice(valueStart, valueEnd)), keyStart, valueStart, valueEnd });
    i = valueEnd;
  }
  return { text, open, close: i, members };
}

function skipWs(t: string, i: number): number {
  while (i < t.length && (t[i] === ' ' || t[i] === '\t' || t[i] === '\n' || t[i] === '\r' || t[i] === '\uFEFF')) i++;
  return i;
}

function skipString(t: string, i: number): number {
  for (i++; i < t.length; i++) {
    if (t[i] === '\\') i++;
    else if (t[i] === '"') return i + 1;
  }
  return i;
}

function skipValue(t: string, i: number): number {
  const c = t[i];
  if (c === '"') return skipString(t, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    for (; i < t.length; i++) {
      const d = t[i];
      if (d === '"') i = skipString(t, i) - 1;
      else if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') {
        depth--;
        if (depth === 0) return i + 1;
      }
    }
    return i;
  }
  while (i < t.length && !/[\s,}\]]/.test(t[i]!)) i++;
  return i;
}

/** The indentation unit the file uses (from its first member), two spaces when it cannot tell. */
export function jsonIndent(o: JsonObjectText): string {
  const first = o.members[0];
  if (!first) return '  ';
  const before = o.text.slice(0, first.keyStart);
  const m = /\n([ \t]*)$/.exec(before);
  return m && m[1] !== '' ? m[1]! : '  ';
}

/**
 * Returns the text with member `key` set to `value` (JSON.stringify'd with the file's indentation): the last member
 * of that name is replaced in place (JSON readers keep the last), or a new member is added after the last one.
 */
export function setJsonMember(o: JsonObjectText, key: string, value: unknown): string {
  const indent = jsonIndent(o);
  const eol = /\r\n/.test(o.text) ? '\r\n' : '\n';
  const rendered = JSON.stringify(value, null, indent).replace(/\n/g, eol + indent);
  const existing = o.members.filter((m) => m.key === key).at(-1);
  if (existing) return o.text.slice(0, existing.valueStart) + rendered + o.text.slice(existing.valueEnd);
  const member = `${JSON.stringify(key)}: ${rendered}`;
  const last = o.members.at(-1);
  if (last) return `${o.text.slice(0, last.valueEnd)},${eol}${indent}${member}${o.text.slice(last.valueEnd)}`;
  return `${o.text.slice(0, o.open + 1)}${eol}${indent}${member}${eol}${o.text.slice(o.close)}`;
}
