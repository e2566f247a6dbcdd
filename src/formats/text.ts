/**
 * Small text helpers shared by the lossless parsers: lines that keep their own line endings, so a file can be put
 * back together byte-for-byte after one line changed.
 */
import { DropkeyError, ErrorCodes } from '../errors.js';

/** Lines with their endings ("\n", "\r\n", or "" for a last line without one); `join('')` gives the text back. */
export function splitLines(text: string): string[] {
  if (text === '') return [];
  return text.split(/(?<=\n)/);
}

/** A line's content without its ending. */
export function lineBody(line: string): string {
  return line.replace(/\r?\n$/, '');
}

/** The line ending a file already uses, so lines we add look like the ones around them. */
export function eolOf(text: string): string {
  return /\r\n/.test(text) ? '\r\n' : '\n';
}

/** Text that ends with a line ending (when not empty), ready to have lines appended. */
export function withFinalEol(text: string, eol: string): string {
  return text === '' || text.endsWith('\n') ? text : text + eol;
}

/** RFC 3339 in UTC, seconds precision (what Go's `time.Time`, Python's `fromisoformat` and most parsers accept). */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The error every parser throws: code DROPKEY_BAD_INPUT, naming the format and where it went wrong. */
export function badFile(what: string, problem: string, hint?: string): DropkeyError {
  return new DropkeyError(ErrorCodes.BAD_INPUT, `${what}: ${problem}`, hint === undefined ? {} : { hint });
}
