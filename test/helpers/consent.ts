/**
 * Drives the emulator's consent page over plain HTTP, as a user without JavaScript would: GET the authorize page,
 * find the Allow (or Cancel) button, submit its form with every successful control, and return the redirect
 * (read from the Location header; nothing needs to listen on the redirect URI). The page is parsed loosely
 * on purpose: attribute order, quoting, case and extra markup must not matter, only real HTML form semantics.
 */

export interface FormControl {
  tag: 'input' | 'button' | 'select' | 'textarea';
  type: string;
  name: string | undefined;
  value: string;
  checked: boolean;
  /** Visible text: a button's content, a select's option texts, or the text right after a radio/checkbox. */
  text: string;
  options?: { value: string; text: string; selected: boolean }[];
}

export interface HtmlForm {
  action: string;
  method: string;
  controls: FormControl[];
}

export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos|#39|nbsp);/gi, (m, e: string) => {
    const k = e.toLowerCase();
    if (k.startsWith('#x')) return String.fromCodePoint(parseInt(k.slice(2), 16));
    if (k.startsWith('#')) return String.fromCodePoint(parseInt(k.slice(1), 10));
    return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' } as Record<string, string>)[k] ?? m;
  });
}

export function parseAttributes(src: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  const re = /([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?/g;
  for (const m of src.matchAll(re)) {
    const name = m[1]!.toLowerCase();
    if (name in attrs) continue;
    attrs[name] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

export function textOf(html: string): string {
  return decodeEntities(html.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
}

export function parseForms(html: string): HtmlForm[] {
  const forms: HtmlForm[] = [];
  for (const fm of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form\s*>/gi)) {
    const attrs = parseAttributes(fm[1] ?? '');
    const body = fm[2] ?? '';
    const controls: FormControl[] = [];
    const re = /<(input|button|select|textarea)\b([^>]*)>/gi;
    let m: RegExpExecArray | null;
    while ((m = re.exec(body))) {
      const tag = m[1]!.toLowerCase() as FormControl['tag'];
      const a = parseAttributes(m[2] ?? '');
      if ('disabled' in a) continue;
      const after = body.slice(re.lastIndex);
      if (tag === 'input') {
        const type = (a['type'] ?? 'text').toLowerCase();
        // The label text of a radio/checkbox: whatever text follows it up to the next control.
        const next = after.search(/<(input|button|select|textarea)\b/i);
        controls.push({
          tag, type, name: a['name'], value: a['value'] ?? (type === 'checkbox' || type === 'radio' ? 'on' : ''),
          checked: 'checked' in a, text: textOf(next < 0 ? after : after.slice(0, next)),
        });
      } else if (tag === 'button') {
        const end = after.search(/<\/button\s*>/i);
        const inner = end < 0 ? '' : after.slice(0, end);
        controls.push({ tag, type: (a['type'] ?? 'submit').toLowerCase(), name: a['name'], value: a['value'] ?? '', checked: false, text: textOf(inner) });
      } else if (tag === 'select') {
        const end = after.search(/<\/select\s*>/i);
        const inner = end < 0 ? after : after.slice(0, end);
        const options = [...inner.matchAll(/<option\b([^>]*)>([\s\S]*?)(?=<option\b|<\/select|$)/gi)].map((o) => {
          const oa = parseAttributes(o[1] ?? '');
          const text = textOf((o[2] ?? '').replace(/<\/option\s*>[\s\S]*$/i, ''));
          return { value: oa['value'] ?? text, text, selected: 'selected' in oa };
        });
        controls.push({ tag, type: 'select', name: a['name'], value: '', checked: false, text: options.map((o) => o.text).join(' | '), options });
      } else {
        const end = after.search(/<\/textarea\s*>/i);
        controls.push({ tag, type: 'textarea', name: a['name'], value: decodeEntities(end < 0 ? '' : after.slice(0, end)), checked: false, text: '' });
      }
    }
    forms.push({ action: attrs['action'] ?? '', method: (attrs['method'] ?? 'get').toLowerCase(), controls });
  }
  return forms;
}

function isSubmit(c: FormControl): boolean {
  return (c.tag === 'button' && c.type === 'submit') || (c.tag === 'input' && (c.type === 'submit' || c.type === 'image'));
}

/**
 * The form data a browser would send when `submitter` is clicked (HTML "constructing the entry list"),
 * with the user choosing `account` (an account id or email) among radio buttons or a select, if given.
 */
export function formEntries(form: HtmlForm, submitter: FormControl, account?: string): [string, string][] {
  const entries: [string, string][] = [];
  const matches = (value: string, text: string) => account !== undefined && (value === account || text.includes(account));
  const radioGroups = new Map<string, FormControl[]>();
  for (const c of form.controls) if (c.tag === 'input' && c.type === 'radio' && c.name) radioGroups.set(c.name, [...(radioGroups.get(c.name) ?? []), c]);
  const radioChoice = new Map<string, FormControl>();
  for (const [name, group] of radioGroups) {
    const chosen = group.find((c) => matches(c.value, c.text)) ?? group.find((c) => c.checked) ?? group[0]!;
    radioChoice.set(name, chosen);
  }
  for (const c of form.controls) {
    if (!c.name) continue;
    if (isSubmit(c)) {
      if (c === submitter) entries.push([c.name, c.value]);
      continue;
    }
    if (c.tag === 'button') continue;
    if (c.type === 'radio') {
      if (radioChoice.get(c.name) === c) entries.push([c.name, c.value]);
    } else if (c.type === 'checkbox') {
      if (c.checked) entries.push([c.name, c.value]);
    } else if (c.type === 'select') {
      const opts = c.options ?? [];
      const o = opts.find((x) => matches(x.value, x.text)) ?? opts.find((x) => x.selected) ?? opts[0];
      if (o) entries.push([c.name, o.value]);
    } else if (c.type !== 'reset' && c.type !== 'file') {
      entries.push([c.name, c.value]);
    }
  }
  return entries;
}

export interface ConsentResult {
  /** HTML of the consent page. */
  page: string;
  pageStatus: number;
  /** Status of the final emulator response (a redirect when the flow completed). */
  status: number;
  /** Location of the redirect that leaves the emulator (to the app's redirect URI), if any. */
  location: string | undefined;
  /** The final emulator page's HTML when there was no redirect (e.g. the no-redirect code page). */
  finalHtml: string;
}

/** Rewrites Dropbox web/API hosts in an authorize URL to the emulator (docs/emulator.md ("Pointing clients at it")). */
export function toEmulatorUrl(u: string, base: string): string {
  return u.replace(/^https:\/\/(?:(?:www\.)?dropbox\.com|(?:api|content|notify)\.dropboxapi\.com)(?=[/?#]|$)/, base);
}

function cookieJar() {
  const jar = new Map<string, string>();
  return {
    take(res: Response) {
      const list = (res.headers as Headers & { getSetCookie?: () => string[] }).getSetCookie?.() ?? [];
      for (const sc of list) {
        const [pair] = sc.split(';');
        const i = pair!.indexOf('=');
        if (i > 0) jar.set(pair!.slice(0, i).trim(), pair!.slice(i + 1).trim());
      }
    },
    header(): Record<string, string> {
      return jar.size ? { Cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } : {};
    },
  };
}

/**
 * GET the authorize page, click the button whose label matches `button` (default /allow/i) and follow
 * redirects while they stay on the emulator. Returns where the user's browser would be sent next.
 */
export async function driveConsent(
  authorizeUrl: string,
  opts: { button?: RegExp; account?: string } = {},
): Promise<ConsentResult> {
  const button = opts.button ?? /\ballow\b/i;
  const jar = cookieJar();
  const pageUrl = new URL(authorizeUrl);
  const first = await fetch(pageUrl, { redirect: 'manual' });
  jar.take(first);
  const page = await first.text();
  if (first.status >= 300 && first.status < 400) {
    return { page, pageStatus: first.status, status: first.status, location: first.headers.get('location') ?? undefined, finalHtml: '' };
  }
  if (first.status !== 200) throw new Error(`authorize page answered ${first.status}: ${textOf(page).slice(0, 300)}`);
  const forms = parseForms(page);
  let target: { form: HtmlForm; submitter: FormControl } | undefined;
  for (const form of forms) {
    const submitter = form.controls.find((c) => isSubmit(c) && (button.test(c.text) || button.test(c.value) || button.test(c.name ?? '')));
    if (submitter) {
      target = { form, submitter };
      break;
    }
  }
  if (!target) throw new Error(`no submit button matching ${button} on the authorize page: ${textOf(page).slice(0, 400)}`);
  const entries = formEntries(target.form, target.submitter, opts.account);
  const action = new URL(target.form.action || pageUrl.href, pageUrl);
  let res: Response;
  if (target.form.method === 'post') {
    res = await fetch(action, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...jar.header() },
      body: new URLSearchParams(entries).toString(),
    });
  } else {
    action.search = new URLSearchParams(entries).toString();
    res = await fetch(action, { redirect: 'manual', headers: jar.header() });
  }
  // Follow redirects that stay on the emulator (an intermediate page); stop at the first one that leaves it.
  for (let hops = 0; hops < 5; hops++) {
    jar.take(res);
    const loc = res.headers.get('location');
    if (!(res.status >= 300 && res.status < 400 && loc)) break;
    const next = new URL(loc, action);
    if (next.origin !== pageUrl.origin) return { page, pageStatus: first.status, status: res.status, location: next.href, finalHtml: '' };
    await res.arrayBuffer();
    res = await fetch(next, { redirect: 'manual', headers: jar.header() });
  }
  const finalHtml = await res.text();
  const loc = res.headers.get('location');
  return { page, pageStatus: first.status, status: res.status, location: loc ? new URL(loc, action).href : undefined, finalHtml };
}
