/**
 * The control API under /_emulator/ (docs/emulator.md; shapes documented in docs/emulator.md). Other tools depend
 * on these shapes: add fields, never rename or remove them.
 */
import type { Core } from './core.js';
import type { Faults, RequestLog } from './faults.js';
import { tokenResponseBody } from './oauth.js';
import { InputError, type AccountInput, type AccountRecord, type AppInput, type AppRecord, type TokenAccessType } from './state.js';
import { isoSeconds, jsonResponse, mediaType, parseJsonBytes, readBody } from './wire.js';
import { nameOf } from './routes/account.js';

export interface ControlDeps {
  core: Core;
  faults: Faults;
  log: RequestLog;
  addAccount(input: AccountInput): { account: AccountRecord; created: boolean };
  reset(): Promise<void>;
}

export function appView(app: AppRecord): Record<string, unknown> {
  return { ...app, redirect_uris: [...app.redirect_uris], scopes: [...app.scopes] };
}

export function accountView(core: Core, a: AccountRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {
    account_id: a.account_id,
    uid: a.uid,
    email: a.email,
    given_name: a.given_name,
    surname: a.surname,
    name: nameOf(a),
    namespace_id: a.namespace_id,
    country: a.country,
    locale: a.locale,
  };
  if (a.team_id) {
    out['team_id'] = a.team_id;
    out['team_name'] = core.state.teams.get(a.team_id)?.name;
    out['team_member_id'] = a.team_member_id;
    out['team_admin'] = a.team_admin === true;
  }
  return out;
}

function fail(status: number, error: string, description: string): Response {
  return jsonResponse({ error, error_description: description }, status);
}

async function jsonBody(req: Request): Promise<unknown> {
  const bytes = await readBody(req.body, 1024 * 1024);
  if (!bytes) throw new InputError(413, 'too_large', 'request body larger than 1 MiB');
  if (bytes.byteLength === 0) return {};
  const type = mediaType(req.headers.get('content-type'));
  if (type !== 'application/json' && type !== '') throw new InputError(415, 'bad_content_type', 'send JSON with Content-Type: application/json');
  const parsed = parseJsonBytes(bytes);
  if (!parsed) throw new InputError(400, 'bad_json', 'request body is not valid JSON');
  return parsed.value;
}

function asObject(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InputError(400, 'bad_request', 'body must be a JSON object');
  return v as Record<string, unknown>;
}

/** Mints tokens without a browser: the same grant the consent page + code exchange would give. */
export function grant(core: Core, input: unknown): Record<string, unknown> {
  const o = asObject(input);
  for (const k of Object.keys(o)) if (!['app', 'account', 'scopes', 'token_access_type'].includes(k)) throw new InputError(400, 'bad_request', `unknown field "${k}"`);
  if (typeof o['app'] !== 'string') throw new InputError(400, 'bad_request', 'app must be an app key');
  if (typeof o['account'] !== 'string') throw new InputError(400, 'bad_request', 'account must be an account id or an email');
  const app = core.state.apps.get(o['app']);
  if (!app) throw new InputError(404, 'not_found', `no app with key "${o['app']}"`);
  const account = core.state.accountByRef(o['account']);
  if (!account) throw new InputError(404, 'not_found', `no account "${o['account']}"`);
  if (app.team && !account.team_id) throw new InputError(400, 'bad_request', 'a team app must be granted by a team member (normally a team admin)');
  const tat = o['token_access_type'] ?? 'offline';
  if (tat !== 'online' && tat !== 'offline' && tat !== 'legacy') throw new InputError(400, 'bad_request', 'token_access_type must be "online", "offline" or "legacy"');
  let scopes = app.scopes;
  if (o['scopes'] !== undefined) {
    const s = o['scopes'];
    if (!Array.isArray(s) || s.some((x) => typeof x !== 'string')) throw new InputError(400, 'bad_request', 'scopes must be an array of strings');
    const extra = (s as string[]).filter((x) => !app.scopes.includes(x));
    if (extra.length) throw new InputError(400, 'bad_request', `the app is not configured for scope(s): ${extra.join(' ')}`);
    scopes = [...new Set(s as string[])];
  }
  const now = core.now();
  const made = core.state.createGrant({ app, account, scopes, tokenAccessType: tat as TokenAccessType, pkce: false }, now, core.tokenLifetimeSeconds);
  core.save();
  return tokenResponseBody(core, made.grant, account, made.accessToken, made.refreshToken);
}

export async function handleControl(deps: ControlDeps, req: Request, url: URL): Promise<Response> {
  const { core } = deps;
  const path = url.pathname.replace(/\/+$/, '');
  const m = req.method;
  try {
    switch (path) {
      case '/_emulator':
        if (m === 'GET') {
          return jsonResponse({
            name: 'dropkey emulator',
            now: isoSeconds(core.now()),
            apps: core.state.apps.size,
            accounts: core.state.accounts.size,
            teams: core.state.teams.size,
          });
        }
        break;
      case '/_emulator/apps':
        if (m === 'GET') return jsonResponse({ apps: [...core.state.apps.values()].map(appView) });
        if (m === 'POST') {
          const { app, created } = core.state.upsertApp(asObject(await jsonBody(req)) as unknown as AppInput);
          core.save();
          return jsonResponse(appView(app), created ? 201 : 200);
        }
        break;
      case '/_emulator/accounts':
        if (m === 'GET') return jsonResponse({ accounts: [...core.state.accounts.values()].map((a) => accountView(core, a)) });
        if (m === 'POST') {
          const { account, created } = deps.addAccount(asObject(await jsonBody(req)) as unknown as AccountInput);
          core.save();
          return jsonResponse(accountView(core, account), created ? 201 : 200);
        }
        break;
      case '/_emulator/grants':
        if (m === 'POST') return jsonResponse(grant(core, await jsonBody(req)), 201);
        break;
      case '/_emulator/faults':
        if (m === 'GET') return jsonResponse({ faults: deps.faults.pending() });
        if (m === 'POST') return jsonResponse(deps.faults.add(await jsonBody(req)), 201);
        if (m === 'DELETE') return jsonResponse({ cleared: deps.faults.clear() });
        break;
      case '/_emulator/clock': {
        const view = () => jsonResponse({ now: new Date(core.now()).toISOString(), offset_seconds: core.state.clockOffsetMs / 1000 });
        if (m === 'GET') return view();
        if (m === 'POST') {
          const o = asObject(await jsonBody(req));
          const s = o['advance_seconds'];
          if (typeof s !== 'number' || !Number.isFinite(s) || s < 0 || s > 100 * 365 * 86400) {
            throw new InputError(400, 'bad_request', 'advance_seconds must be a number of seconds >= 0 (the clock never goes back)');
          }
          core.state.clockOffsetMs += Math.round(s * 1000);
          core.save();
          return view();
        }
        break;
      }
      case '/_emulator/requests':
        if (m === 'GET') return jsonResponse({ requests: deps.log.list() });
        if (m === 'DELETE') return jsonResponse({ cleared: deps.log.clear() });
        break;
      case '/_emulator/reset':
        if (m === 'POST') {
          await req.body?.cancel().catch(() => {});
          await deps.reset();
          return jsonResponse({ reset: true });
        }
        break;
      default:
        return fail(404, 'not_found', `no control endpoint ${path}; see docs/emulator.md`);
    }
    return fail(405, 'method_not_allowed', `${m} is not allowed on ${path}`);
  } catch (err) {
    if (err instanceof InputError) return fail(err.status, err.code, err.message);
    throw err;
  }
}
