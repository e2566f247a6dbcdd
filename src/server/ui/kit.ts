/**
 * Request plumbing shared by the UI pages: the signed-in guard (explicit per route, never a '*' middleware,
 * because this sub-app is mounted at '/' and a wildcard would also catch other modules' unknown paths), form
 * reading with a size cap, and the CSRF check on every state-changing request.
 */
import { DropkeyError, ErrorCodes, type Fix } from '../../errors.js';
import { readBody, type AppContext } from '../context.js';
import { HttpError, ServerErrorCodes } from '../errors.js';
import { type Html, html } from '../html.js';
import type { ServerServices } from '../services.js';
import { fixLinks } from './fix.js';
import { checkCsrf, readSession, type UiSession } from './session.js';

const MAX_FORM_BYTES = 64 * 1024;

export type Form = FormData;

/** A same-origin path to return to after sign-in, or undefined. */
export function safeNext(v: unknown): string | undefined {
  return typeof v === 'string' && /^\/(?![/\\])[^\s]{0,500}$/.test(v) ? v : undefined;
}

export async function readForm(c: AppContext): Promise<Form> {
  const type = c.req.header('content-type') ?? '';
  if (!/^(application\/x-www-form-urlencoded|multipart\/form-data)\b/i.test(type)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Send this form from the page (the request body is not a form).');
  }
  const body = await readBody(c, MAX_FORM_BYTES, 'The form');
  try {
    return await new Response(new Uint8Array(body), { headers: { 'content-type': type } }).formData();
  } catch {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The form could not be read.');
  }
}

export function field(form: Form, name: string): string {
  const v = form.get(name);
  return typeof v === 'string' ? v.trim() : '';
}

export function fields(form: Form, name: string): string[] {
  return form.getAll(name).filter((v): v is string => typeof v === 'string').map((v) => v.trim()).filter(Boolean);
}

/** The page script asks for JSON (Accept: application/json); forms without script get HTML and redirects. */
export function wantsJson(c: AppContext): boolean {
  return /\bapplication\/json\b/i.test(c.req.header('accept') ?? '');
}

/** Errors a person can fix by changing the form: shown on the form instead of an error page. */
export function isUserError(err: unknown): err is DropkeyError {
  return (
    err instanceof DropkeyError &&
    (err.code === ErrorCodes.BAD_INPUT || err.code === ErrorCodes.ALREADY_EXISTS || err.code === ErrorCodes.NOT_FOUND)
  );
}

/** An error in plain words: its message and hint (for the page script's JSON, which shows text). */
export function errorWords(err: { message: string; hint?: string | undefined }): string {
  return err.hint ? `${err.message} ${err.hint}` : err.message;
}

/** An error shown on a page: its message and hint, then its fix as links to the pages where it is done. */
export function errorText(err: { message: string; hint?: string | undefined; fix?: Fix | undefined }): Html {
  return html`${errorWords(err)}${err.fix ? html` ${fixLinks(err.fix)}` : ''}`;
}

export const actorOf = (ui: UiSession) => `admin:${ui.admin.email}`;

type Page = (c: AppContext, ui: UiSession) => Promise<Response> | Response;
type Action = (c: AppContext, ui: UiSession, form: Form) => Promise<Response> | Response;

/** GET pages: signed-in admins only; others are sent to sign in and brought back. */
export function guard(s: ServerServices, fn: Page) {
  return async (c: AppContext): Promise<Response> => {
    const ui = await readSession(c, s);
    if (!ui) {
      const url = new URL(c.req.url);
      const next = `${url.pathname}${url.search}`;
      return c.redirect(`/signin?next=${encodeURIComponent(next)}`, 303);
    }
    c.header('Cache-Control', 'no-store');
    return fn(c, ui);
  };
}

/** State-changing requests: a live session AND a valid CSRF token (and a same-origin Origin). */
export function guardPost(s: ServerServices, fn: Action) {
  return async (c: AppContext): Promise<Response> => {
    const ui = await readSession(c, s);
    if (!ui) {
      throw new HttpError(ServerErrorCodes.UNAUTHORIZED, 'You are signed out.', { hint: 'Sign in again at /signin and repeat the action.' });
    }
    const form = await readForm(c);
    checkCsrf(c, s, ui, form);
    c.header('Cache-Control', 'no-store');
    return fn(c, ui, form);
  };
}
