/**
 * Airflow connections: the URI form, the JSON form of `AIRFLOW_CONN_*`, and the three files Airflow's
 * LocalFilesystemBackend reads (`[secrets] backend_kwargs = {"connections_file_path": ...}`), as its
 * "Local Filesystem Secrets Backend" page documents them:
 *   - JSON: one object, connection id -> a URI string or a connection object;
 *   - YAML: the same mapping in YAML;
 *   - .env: `CONN_ID=URI` lines; blank lines and lines starting with `#` are skipped, the key is everything before
 *     the first `=` and the value everything after it, unquoted.
 * A connection object's keys are the Connection model's (conn_type, description, host, login, password, schema,
 * port) plus `extra` (a JSON string) or `extra_dejson` (an object), never both.
 * Files are edited without loss: one connection's text is replaced, every other byte stays.
 */
import { isMap, isScalar, parseDocument, stringify, type Pair } from 'yaml';
import { badFile, eolOf, lineBody, splitLines, withFinalEol } from './text.js';
import { parseJsonObject, setJsonMember } from './json-members.js';

export type AirflowForm = 'json' | 'yaml' | 'env';

/** A connection as Airflow's Connection model holds it (extra decoded from JSON). */
export interface AirflowConnection {
  conn_type: string | null;
  host: string | null;
  login: string | null;
  password: string | null;
  schema: string | null;
  port: number | null;
  extra: Record<string, unknown>;
}

const FIELDS = new Set(['conn_id', 'conn_type', 'description', 'host', 'login', 'password', 'schema', 'port', 'extra', 'extra_dejson', 'uri']);

// Python's urllib.parse.quote(s, safe=''): only letters, digits and _.-~ stay as they are.
function pyQuote(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function pyUnquote(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// urlencode / parse_qsl: form encoding, space as '+'.
function formEncode(params: Record<string, string>): string {
  return Object.entries(params)
    .map(([k, v]) => `${pyQuote(k).replace(/%20/g, '+')}=${pyQuote(v).replace(/%20/g, '+')}`)
    .join('&');
}

/** Parses a connection URI the way Airflow's Connection(uri=...) does. */
export function parseAirflowUri(uri: string, what = 'Airflow connection URI'): AirflowConnection {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/.exec(uri.trim());
  if (!m) throw badFile(what, 'expected SCHEME://[LOGIN[:PASSWORD]@]HOST[:PORT][/SCHEMA][?EXTRAS]');
  const [, scheme, authority, path, query] = m as unknown as [string, string, string, string, string | undefined];
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? null : authority.slice(0, at);
  const hostport = at < 0 ? authority : authority.slice(at + 1);
  let login: string | null = null;
  let password: string | null = null;
  if (userinfo !== null) {
    const colon = userinfo.indexOf(':');
    login = pyUnquote(colon < 0 ? userinfo : userinfo.slice(0, colon));
    password = colon < 0 ? null : pyUnquote(userinfo.slice(colon + 1));
  }
  const hp = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(hostport);
  if (!hp) throw badFile(what, 'the host part cannot be read');
  const host = hp[1] ? pyUnquote(hp[1]) : null;
  const port = hp[2] ? Number(hp[2]) : null;
  let extra: Record<string, unknown> = {};
  if (query) {
    const params = new URLSearchParams(query);
    const raw = params.get('__extra__');
    if (raw !== null) {
      try {
        const j = JSON.parse(raw) as unknown;
        if (typeof j === 'object' && j !== null && !Array.isArray(j)) extra = j as Record<string, unknown>;
      } catch {
        throw badFile(what, 'the __extra__ parameter is not JSON');
      }
    } else for (const [k, v] of params) extra[k] = v;
  }
  let conn = scheme;
  if (conn === 'postgresql') conn = 'postgres';
  return {
    conn_type: conn.replace(/-/g, '_'),
    host,
    login: login === '' && password !== null ? null : login,
    password,
    schema: path.length > 1 ? pyUnquote(path.slice(1)) : null,
    port,
    extra,
  };
}

/** The URI Airflow's Connection.get_uri() would give for this connection. */
export function airflowUri(c: AirflowConnection): string {
  let uri = `${(c.conn_type ?? '').toLowerCase().replace(/_/g, '-')}://`;
  let auth = '';
  if (c.login !== null) auth += pyQuote(c.login);
  if (c.password !== null) auth += `:${pyQuote(c.password)}`;
  if (auth !== '') uri += `${auth}@`;
  if (c.host) uri += pyQuote(c.host);
  if (c.port) uri += `:${c.port}`;
  if (c.schema) uri += `/${pyQuote(c.schema)}`;
  const keys = Object.keys(c.extra);
  if (keys.length > 0) {
    const flat = Object.values(c.extra).every((v) => typeof v === 'string');
    const query = flat ? formEncode(c.extra as Record<string, string>) : formEncode({ __extra__: JSON.stringify(c.extra) });
    uri += (c.schema ? '?' : '/?') + query;
  }
  return uri;
}

/** A connection from a file entry: a URI string or a connection object. */
export function airflowConnectionFrom(value: unknown, connId: string, what: string): AirflowConnection {
  if (typeof value === 'string') return parseAirflowUri(value, `${what}, connection "${connId}"`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badFile(what, `connection "${connId}" must be a URI string or an object`);
  }
  const o = value as Record<string, unknown>;
  const bad = Object.keys(o).filter((k) => !FIELDS.has(k));
  if (bad.length > 0) throw badFile(what, `connection "${connId}" has keys Airflow does not accept: ${bad.join(', ')}`);
  if ('extra' in o && 'extra_dejson' in o) throw badFile(what, `connection "${connId}" has both extra and extra_dejson (Airflow takes one)`);
  if (typeof o['uri'] === 'string') return parseAirflowUri(o['uri'], `${what}, connection "${connId}"`);
  const str = (k: string): string | null => (o[k] === undefined || o[k] === null ? null : String(o[k]));
  const port = str('port');
  return {
    conn_type: str('conn_type'),
    host: str('host'),
    login: str('login'),
    password: str('password'),
    schema: str('schema'),
    port: port === null || port === '' ? null : Number(port),
    extra: decodeExtra(o, connId, what),
  };
}

function decodeExtra(o: Record<string, unknown>, connId: string, what: string): Record<string, unknown> {
  const raw = o['extra_dejson'] ?? o['extra'];
  if (raw === undefined || raw === null || raw === '') return {};
  if (typeof raw === 'object' && !Array.isArray(raw)) return { ...(raw as Record<string, unknown>) };
  if (typeof raw === 'string') {
    try {
      const j = JSON.parse(raw) as unknown;
      if (typeof j === 'object' && j !== null && !Array.isArray(j)) return j as Record<string, unknown>;
    } catch {
      /* reported below */
    }
  }
  throw badFile(what, `the extra of connection "${connId}" is not a JSON object`);
}

/** A connection from an AIRFLOW_CONN_* value: a URI, or (Airflow 2.3+) the JSON serialization. */
export function airflowConnectionFromEnv(value: string, name: string): AirflowConnection {
  const what = `environment variable ${name}`;
  if (value.trim().startsWith('{')) {
    let j: unknown;
    try {
      j = JSON.parse(value);
    } catch {
      throw badFile(what, 'starts with "{" but is not JSON');
    }
    return airflowConnectionFrom(j, name, what);
  }
  return parseAirflowUri(value, what);
}

function fileWhat(form: AirflowForm): string {
  return `Airflow connections file (${form === 'env' ? '.env' : form.toUpperCase()})`;
}

/** Every connection entry of a connections file, as written (a URI string or an object), by connection id. */
export function readAirflowFile(text: string, form: AirflowForm): Map<string, unknown> {
  const what = fileWhat(form);
  const out = new Map<string, unknown>();
  if (text.trim() === '') return out;
  if (form === 'json') {
    for (const m of parseJsonObject(text, what).members) out.set(m.key, m.value);
  } else if (form === 'yaml') {
    const { map } = yamlMap(text, what);
    for (const p of map?.items ?? []) out.set(yamlKey(p, what), (p.value as { toJSON?: () => unknown } | null)?.toJSON?.() ?? null);
  } else {
    for (const e of envEntries(text, what)) {
      if (out.has(e.key)) throw badFile(what, `connection "${e.key}" appears twice (Airflow refuses the file)`);
      out.set(e.key, e.value);
    }
  }
  return out;
}

/**
 * Returns the text with connection `connId` set to what `next` makes of its current entry (undefined when it is
 * missing). For .env files entries are URI strings. Every other connection, comment and blank line is kept.
 */
export function setAirflowEntry(text: string | null, form: AirflowForm, connId: string, next: (current: unknown) => unknown): string {
  const what = fileWhat(form);
  if (/[\r\n]/.test(connId) || connId === '') throw badFile(what, 'a connection id cannot be empty or hold a line break');
  const src = text ?? '';
  const current = readAirflowFile(src, form).get(connId);
  const value = next(current);
  if (form === 'json') {
    const o = parseJsonObject(src.trim() === '' ? `${src}{}` : src, what);
    const out = setJsonMember(o, connId, value);
    return src.trim() === '' ? `${out.replace(/^\s*/, '')}\n` : out;
  }
  if (form === 'env') return setEnvLine(src, connId, value, what);
  return setYamlMember(src, connId, value, what);
}

interface EnvEntry {
  key: string;
  value: string;
  line: number;
}

function envEntries(text: string, what: string): EnvEntry[] {
  const out: EnvEntry[] = [];
  splitLines(text).forEach((raw, i) => {
    const line = lineBody(raw);
    if (line === '' || /^\s*#/.test(line)) return;
    const eq = line.indexOf('=');
    if (eq < 0) throw badFile(what, `line ${i + 1}: expected CONN_ID=URI (Airflow needs an "=" on every line)`);
    if (eq === 0) throw badFile(what, `line ${i + 1}: the connection id before "=" is empty`);
    if (eq === line.length - 1) throw badFile(what, `line ${i + 1}: the value after "=" is empty`);
    out.push({ key: line.slice(0, eq), value: line.slice(eq + 1), line: i });
  });
  return out;
}

function setEnvLine(text: string, connId: string, value: unknown, what: string): string {
  if (typeof value !== 'string' || /[\r\n]/.test(value)) throw badFile(what, 'a .env connection must be a one-line URI');
  if (connId.includes('=')) throw badFile(what, 'a connection id in a .env file cannot hold "="');
  const lines = splitLines(text);
  const hit = envEntries(text, what).find((e) => e.key === connId);
  if (hit) {
    const old = lines[hit.line]!;
    lines[hit.line] = `${connId}=${value}${old.slice(lineBody(old).length)}`;
    return lines.join('');
  }
  const eol = eolOf(text);
  return `${withFinalEol(text, eol)}${connId}=${value}${eol}`;
}

function yamlMap(text: string, what: string) {
  // PyYAML (Airflow's yaml.safe_load) keeps the last of repeated keys instead of failing.
  const doc = parseDocument(text, { uniqueKeys: false });
  if (doc.errors.length > 0) throw badFile(what, `not valid YAML (${doc.errors[0]!.message.split('\n')[0]})`);
  const c = doc.contents;
  if (c === null || (isScalar(c) && (c.value === null || c.value === ''))) return { doc, map: null };
  if (!isMap(c)) throw badFile(what, 'the file must hold one mapping of connection ids');
  return { doc, map: c };
}

function yamlKey(p: Pair, what: string): string {
  if (!isScalar(p.key)) throw badFile(what, 'connection ids must be plain strings');
  return String(p.key.value);
}

function yamlIndentOf(text: string, map: { items: Pair[] }): number {
  for (const p of map.items) {
    const v = p.value;
    if (isMap(v) && !v.flow && v.range && isScalar(p.key) && p.key.range) {
      const col = (at: number): number => at - (text.lastIndexOf('\n', at - 1) + 1);
      const d = col(v.range[0]) - col(p.key.range[0]);
      if (d > 0) return d;
    }
  }
  return 2;
}

function setYamlMember(text: string, connId: string, value: unknown, what: string): string {
  const { map } = yamlMap(text, what);
  const eol = eolOf(text);
  if (map?.flow) throw badFile(what, 'the top-level mapping is in flow style ({...}); dropkey edits block-style YAML only');
  const indent = map ? yamlIndentOf(text, map) : 2;
  const block = (keyText: string): string => {
    if (typeof value === 'string') return `${keyText}: ${yamlQuote(value)}${eol}`;
    const body = stringify(value, { indent, lineWidth: 0 }).replace(/\n$/, '');
    const pad = ' '.repeat(indent);
    return `${keyText}:${eol}${body.split('\n').map((l) => pad + l).join(eol)}${eol}`;
  };
  const pair = map?.items.filter((p) => yamlKey(p, what) === connId).at(-1);
  if (!pair || !isScalar(pair.key) || !pair.key.range) {
    const keyText = stringify(connId, { lineWidth: 0 }).replace(/\n$/, '');
    return withFinalEol(text, eol) + block(keyText);
  }
  const start = pair.key.range[0];
  const v = pair.value as { range?: [number, number, number] } | null;
  if (typeof value === 'string' && isScalar(pair.value) && v?.range) {
    // A URI entry stays a one-line scalar; its trailing comment is kept.
    return text.slice(0, v.range[0]) + yamlQuote(value) + text.slice(v.range[1]);
  }
  let end = v?.range ? v.range[1] : pair.key.range[2];
  if (text[end - 1] !== '\n') {
    const nl = text.indexOf('\n', end);
    end = nl < 0 ? text.length : nl + 1;
  }
  const out = text.slice(0, start) + block(text.slice(start, pair.key.range[1])) + text.slice(end);
  return end === text.length && !text.endsWith('\n') ? out.replace(/\r?\n$/, '') : out;
}

/** A one-line string as a single-quoted YAML scalar (the style of Airflow's examples). */
function yamlQuote(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
