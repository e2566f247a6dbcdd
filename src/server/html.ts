/**
 * Every HTML the server writes goes through hono's `html` helper (hono/html): it escapes each interpolated value
 * unless it is already escaped markup (built by `html`, or wrapped with `raw` on purpose), joins arrays, and
 * renders null, undefined and false as nothing. Its escaping (& < > " ') is the server's only one: user data
 * (names, emails, Dropbox error text) can never inject markup, in text or in attribute values.
 */
import { html as honoHtml, raw as honoRaw } from 'hono/html';

/** Escaped markup (hono's HtmlEscapedString). A plain string is not Html: interpolating one escapes it. */
export type Html = Awaited<ReturnType<typeof honoHtml>>;

/**
 * hono's `html`, narrowed to its synchronous result. It returns a promise only when a value is a promise, which no
 * page does (pages load their data first, then render); one slipping in would be a bug, reported at once.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  const out = honoHtml(strings, ...values);
  if (out instanceof Promise) throw new TypeError('html: a promise was interpolated; await the value before rendering');
  return out;
}

/** Marks trusted markup. Only for markup built by this server, never for input. */
export function raw(markup: string): Html {
  return honoRaw(markup);
}

export function isHtml(v: unknown): v is Html {
  return v instanceof String && (v as { isEscaped?: unknown }).isEscaped === true;
}
