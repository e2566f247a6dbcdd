/**
 * A cookie-keeping HTTP "browser without JavaScript" for the web UI tests: it talks to the app through
 * app.request() (no socket), sends the Origin and Sec-Fetch-Site headers a real browser sends on same-origin form
 * posts, and never follows redirects (tests look at each one).
 */
import assert from 'node:assert/strict';
import { decodeEntities, parseForms } from '../helpers/consent.js';
import { PUBLIC_URL, type ServerRig } from './rig.js';

export class UiClient {
  readonly jar = new Map<string, string>();
  lastSetCookies: string[] = [];

  constructor(private readonly rig: ServerRig, private readonly base = PUBLIC_URL) {}

  async request(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...(init.headers ?? {}) };
    if (this.jar.size) headers['Cookie'] = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await this.rig.app.request(`${this.base}${path}`, { method, headers, ...(init.body === undefined ? {} : { body: init.body }) });
    this.lastSetCookies = res.headers.getSetCookie();
    for (const sc of this.lastSetCookies) {
      const [pair, ...attrs] = sc.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i).trim();
      const value = pair!.slice(i + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
      if (expired) this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return res;
  }

  get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    return this.request('GET', path, { headers });
  }

  /** A same-origin form post, as a browser sends it. */
  post(path: string, fields: [string, string][] | Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
    const body = new URLSearchParams(fields).toString();
    return this.request('POST', path, {
      body,
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: new URL(this.base).origin, 'Sec-Fetch-Site': 'same-origin', ...headers },
    });
  }

  /** GET a page (200 expected) and return its HTML. */
  async page(path: string): Promise<string> {
    const res = await this.get(path);
    const html = await res.text();
    assert.equal(res.status, 200, `${path}: ${html.slice(0, 400)}`);
    assertNoInlineScript(html);
    return html;
  }
}

export function csrfOf(html: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(html);
  assert.ok(m, 'the page has a CSRF field');
  return decodeEntities(m[1]!);
}

export function formFields(html: string, action: string): [string, string][] {
  const form = parseForms(html).find((f) => f.action === action);
  assert.ok(form, `a form posting to ${action}`);
  return form.controls.filter((c) => c.name && c.tag === 'input' && (c.type === 'hidden' || c.checked || !['checkbox', 'radio'].includes(c.type))).map((c) => [c.name!, c.value]);
}

/** The CSP forbids inline script; make sure no page relies on it. */
export function assertNoInlineScript(html: string): void {
  assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), 'no inline <script>');
  assert.ok(!/\son[a-z]+\s*=/i.test(html), 'no inline event handlers');
  assert.ok(!/\sstyle\s*=/i.test(html), 'no inline style attributes');
}

export function textOf(html: string): string {
  return decodeEntities(html.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
}
