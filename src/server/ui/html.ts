/**
 * A tiny HTML builder: the `html` tag escapes every interpolated value unless it is already `Html` (built by this
 * tag or wrapped with `raw` on purpose), so user data (names, emails, Dropbox error text) can never inject markup.
 * Arrays are joined; null, undefined and false render as nothing.
 */
import { escapeHtml } from '../errors.js';

export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

/** Marks trusted markup. Only for strings built in this folder, never for input. */
export function raw(markup: string): Html {
  return new Html(markup);
}

function render(v: unknown): string {
  if (v instanceof Html) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  if (v === null || v === undefined || v === false) return '';
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new Html(out);
}

/** Attribute-safe URL path for a connection or app name (names are already restricted, this is a second net). */
export function path(...parts: string[]): string {
  return parts.map((p, i) => (i === 0 ? p : encodeURIComponent(p))).join('/');
}
