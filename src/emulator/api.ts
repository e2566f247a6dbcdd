/**
 * The /2/<route> dispatcher: authentication (https://www.dropbox.com/developers/documentation/http/documentation#error-handling), Select-User / Select-Admin and Path-Root
 * (Dropbox HTTP docs: request styles and headers), scopes (Dropbox OAuth guide: scopes), argument decoding per route style (Dropbox HTTP docs: request styles and headers, docs/emulator.md), and turning a module's result or error into
 * Dropbox's wire format. Route modules (route-module.ts) never see HTTP.
 */
import { BadInputError, RateLimitError, RouteError, type Caller, type RouteDef, type RouteResult } from './route-module.js';
import type { Core } from './core.js';
import { hashSecret, isWellFormedToken } from './ids.js';
import type { AccountRecord, AppRecord, GrantRecord } from './state.js';
import { callerTokens } from './routes/account.js';
import { basicAppKey, basicSecretMatches } from './oauth.js';
import {
  authError,
  badInput,
  basicCredentials,
  bugResponse,
  clientGone,
  headerSafeJson,
  headerText,
  jsonResponse,
  mediaType,
  parseJsonBytes,
  parseJsonText,
  rateLimitResponse,
  readBody,
  routeErrorBody,
  textResponse,
} from './wire.js';

/** RPC arguments are small JSON documents; anything larger is refused before it is buffered. */
export const MAX_RPC_BODY = 1024 * 1024;

const CORS_HACK = 'text/plain; charset=dropbox-cors-hack';

const TEAM_TOKEN_ON_USER_ROUTE =
  'This API function operates on a single Dropbox account, but the OAuth 2 access token you provided is for an entire Dropbox Business team.  Since your API app key has team member file access permissions, you can operate on a team member\'s Dropbox by providing the "Dropbox-API-Select-User" HTTP header or "select_user" URL parameter to specify the exact user <https://www.dropbox.com/developers/documentation/http/teams>.';
const USER_TOKEN_ON_TEAM_ROUTE =
  'This is a DfB team management function.  The OAuth 2 access token you provided is for a specific Dropbox user account and does not work with this function.';

type Auth = { caller: Caller; app?: AppRecord } | Response;

export class Api {
  readonly routes = new Map<string, RouteDef>();

  constructor(
    private readonly core: Core,
    routeDefs: RouteDef[],
    private readonly onError: (err: unknown) => void,
  ) {
    for (const r of routeDefs) this.routes.set(r.name, r);
  }

  async handle(req: Request, url: URL, name: string): Promise<Response> {
    const route = this.routes.get(name);
    if (!route) return badInput(name, `Unknown API function: ${url.pathname}`);
    const isGetDownload = (req.method === 'GET' || req.method === 'HEAD') && route.style === 'download';
    if (req.method !== 'POST' && !isGetDownload) {
      return badInput(name, `HTTP method "${req.method}" is not allowed. Use POST${route.style === 'download' ? ', GET or HEAD' : ''}.`);
    }

    const auth = this.authenticate(req, url, route);
    if (auth instanceof Response) return auth;

    // Arguments by style (Dropbox HTTP docs: request styles and headers): rpc in the JSON body; upload/download in Dropbox-API-Arg or ?arg=.
    let arg: unknown = null;
    let argSource: 'body' | 'header' | 'url' = 'body';
    let body: ReadableStream<Uint8Array> | null = null;
    if (route.style === 'rpc') {
      const decoded = await this.rpcArg(req, route);
      if (decoded instanceof Response) return decoded;
      arg = decoded.value;
    } else {
      if (route.style === 'upload') {
        const type = req.headers.get('content-type') ?? '';
        const media = mediaType(type);
        if (media !== 'application/octet-stream' && type.replace(/\s+/g, ' ').toLowerCase() !== CORS_HACK) {
          await req.body?.cancel().catch(() => {});
          return badInput(
            name,
            `Bad HTTP "Content-Type" header: "${type}".  Expecting one of "application/octet-stream", "text/plain; charset=dropbox-cors-hack".`,
          );
        }
        body = req.body ?? emptyStream();
      } else {
        await req.body?.cancel().catch(() => {});
      }
      const header = req.headers.get('dropbox-api-arg');
      const param = url.searchParams.get('arg');
      let text: string | undefined;
      if (header !== null) {
        argSource = 'header';
        text = headerText(header);
        if (text === undefined) return badInput(name, 'HTTP header "Dropbox-API-Arg": could not decode input as UTF-8');
      } else if (param !== null) {
        argSource = 'url';
        text = param;
      } else {
        return badInput(name, 'Must provide HTTP header "Dropbox-API-Arg" or URL parameter "arg".');
      }
      const parsed = parseJsonText(text);
      if (!parsed) {
        return badInput(name, `${argSource === 'header' ? 'HTTP header "Dropbox-API-Arg"' : 'URL parameter "arg"'}: could not decode input as JSON`);
      }
      arg = parsed.value;
    }

    const lengthHeader = req.headers.get('content-length');
    const contentLength = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    let result: RouteResult;
    try {
      result = await route.handler({
        route: name,
        arg,
        body,
        contentLength,
        headers: req.headers,
        caller: auth.caller,
        now: () => this.core.now(),
        signal: req.signal,
      });
    } catch (err) {
      return req.signal.aborted ? clientGone() : this.errorResponse(err, name, argSource);
    }
    return result.kind === 'json' ? jsonResponse(result.value ?? null) : download(req, result);
  }

  private errorResponse(err: unknown, name: string, argSource: 'body' | 'header' | 'url'): Response {
    if (err instanceof RouteError) return jsonResponse(routeErrorBody(err.error, this.core.salt(), err.userMessage), 409);
    if (err instanceof BadInputError) {
      // Modules word reasons for a body ("request body: ..."); content routes read their argument elsewhere.
      let reason = err.reason;
      if (argSource !== 'body' && reason.startsWith('request body: ')) {
        reason = `${argSource === 'header' ? 'HTTP header "Dropbox-API-Arg"' : 'URL parameter "arg"'}: ${reason.slice('request body: '.length)}`;
      }
      return badInput(name, reason);
    }
    if (err instanceof RateLimitError) return rateLimitResponse(err.reason, err.retryAfter, this.core.salt());
    return bugResponse(err, this.onError);
  }

  private async rpcArg(req: Request, route: RouteDef): Promise<{ value: unknown } | Response> {
    const name = route.name;
    const type = req.headers.get('content-type');
    const media = mediaType(type);
    const typeOk = type === null || media === 'application/json' || (type ?? '').replace(/\s+/g, ' ').toLowerCase() === CORS_HACK;
    if (!typeOk) {
      await req.body?.cancel().catch(() => {});
      return badInput(
        name,
        `Bad HTTP "Content-Type" header: "${type}".  Expecting one of "application/json", "application/json; charset=utf-8", "text/plain; charset=dropbox-cors-hack".`,
      );
    }
    const bytes = await readBody(req.body, MAX_RPC_BODY);
    if (!bytes) return badInput(name, `request body: too large (the emulator accepts at most ${MAX_RPC_BODY} bytes of JSON)`);
    if (bytes.byteLength === 0) {
      // The JS SDK sends no body (and no Content-Type) for Void arguments; Python sends `null` (https://www.dropbox.com/developers/documentation/http/documentation).
      if (route.voidArg) return { value: null };
      return badInput(name, 'request body: could not decode input as JSON');
    }
    if (type === null) return badInput(name, 'Missing "Content-Type" header.  Expecting one of "application/json", "text/plain; charset=dropbox-cors-hack".');
    const parsed = parseJsonBytes(bytes);
    if (!parsed) return badInput(name, 'request body: could not decode input as JSON');
    if (route.voidArg && parsed.value !== null) return badInput(name, 'request body: expected null, got value');
    return parsed;
  }

  // ---- authentication -----------------------------------------------------------------------------------------

  private authenticate(req: Request, url: URL, route: RouteDef): Auth {
    const name = route.name;
    if (route.auth === 'noauth') return { caller: { kind: 'none', scopes: [] } };
    const header = req.headers.get('authorization');
    const value = header ?? url.searchParams.get('authorization');
    if (value === null) return badInput(name, 'Must provide HTTP header "Authorization" or URL parameter "authorization".');
    const where = header !== null ? 'HTTP header "Authorization"' : 'URL parameter "authorization"';
    const basic = /^Basic\s/i.test(value);
    const bearer = /^Bearer\s+(\S+)$/i.exec(value);
    // Echo only the start of what was sent, like Dropbox ("sl.Bl..."), so a log of errors never holds a whole secret.
    const shown = `${value.slice(0, 5)}...`;

    if (route.auth === 'app' || (route.auth === 'app, user' && basic)) {
      if (!basic) return badInput(name, `Invalid authorization value in ${where}: "${shown}".  Expecting "Basic <base64(app_key:app_secret)>".`);
      const credentials = basicCredentials(value);
      const app = credentials && this.core.state.apps.get(basicAppKey(this.core, credentials.user));
      if (!credentials || !app || !basicSecretMatches(app, credentials.password)) {
        return authError({ '.tag': 'invalid_access_token' }, this.core.salt());
      }
      return { caller: { kind: 'app', appKey: app.key, scopes: app.scopes }, app };
    }

    if (!bearer) return badInput(name, `Invalid authorization value in ${where}: "${shown}".  Expecting "Bearer <oauth2-access-token>".`);
    const token = bearer[1]!;
    if (!isWellFormedToken(token)) return badInput(name, 'The given OAuth 2 access token is malformed.');
    const rec = this.core.state.tokens.get(hashSecret(token));
    const grant = rec ? this.core.state.grants.get(rec.grant_id) : undefined;
    const app = grant ? this.core.state.apps.get(grant.app_key) : undefined;
    const owner = grant ? this.core.state.accounts.get(grant.account_id) : undefined;
    if (!rec || !grant || !app || !owner) return authError({ '.tag': 'invalid_access_token' }, this.core.salt());
    if (rec.expires_at !== null && rec.expires_at <= this.core.now()) {
      return authError({ '.tag': 'expired_access_token' }, this.core.salt());
    }
    const missingScope = (scope: string) => authError({ '.tag': 'missing_scope', required_scope: scope }, this.core.salt());
    const scopes = rec.scopes;

    const result = grant.team_id
      ? this.teamCaller(req, url, route, grant, app, scopes, missingScope)
      : this.userCaller(req, route, owner, app, scopes, missingScope);
    if (!(result instanceof Response)) callerTokens.set(result.caller, rec.hash);
    return result;
  }

  private userCaller(
    req: Request,
    route: RouteDef,
    owner: AccountRecord,
    app: AppRecord,
    scopes: string[],
    missingScope: (s: string) => Response,
  ): Auth {
    const name = route.name;

    if (route.auth === 'team') return badInput(name, USER_TOKEN_ON_TEAM_ROUTE);
    if (route.scope && !scopes.includes(route.scope)) return missingScope(route.scope);
    if (app.access === 'app_folder' && !route.allowAppFolder) return appFolderRefused(name);
    const root = this.pathRoot(req, route, owner, app);
    if (root instanceof Response) return root;
    return {
      caller: {
        kind: 'user',
        appKey: app.key,
        accountId: owner.account_id,
        ...(owner.team_id ? { teamId: owner.team_id, teamMemberId: owner.team_member_id! } : {}),
        scopes,
        root,
      },
      app,
    };
  }

  private teamCaller(
    req: Request,
    url: URL,
    route: RouteDef,
    grant: GrantRecord,
    app: AppRecord,
    scopes: string[],
    missingScope: (s: string) => Response,
  ): Auth {
    const name = route.name;
    const teamId = grant.team_id!;
    if (route.auth === 'team') {
      if (route.scope && !scopes.includes(route.scope)) return missingScope(route.scope);
      return { caller: { kind: 'team', appKey: app.key, teamId, scopes }, app };
    }
    // A team token on a user route acts as a member chosen by Select-User, or an admin by Select-Admin (Dropbox HTTP docs: request styles and headers).
    const selectUser = req.headers.get('dropbox-api-select-user') ?? url.searchParams.get('select_user');
    const selectAdmin = req.headers.get('dropbox-api-select-admin') ?? url.searchParams.get('select_admin');
    let member: AccountRecord | undefined;
    if (selectUser !== null) {
      member = this.core.state.memberById(teamId, selectUser.trim());
      if (!member) return authError({ '.tag': 'invalid_select_user' }, this.core.salt());
    } else if (selectAdmin !== null) {
      if (!route.selectAdminMode) {
        return badInput(name, 'This API function does not support the "Dropbox-API-Select-Admin" header; use "Dropbox-API-Select-User".');
      }
      member = this.core.state.memberById(teamId, selectAdmin.trim());
      if (!member || !member.team_admin) return authError({ '.tag': 'invalid_select_admin' }, this.core.salt());
    } else {
      return badInput(name, TEAM_TOKEN_ON_USER_ROUTE);
    }
    // Member file access needs team_data.member on top of the route's own scope (https://www.dropbox.com/developers/documentation/http/teams, inferred).
    if (!scopes.includes('team_data.member')) return missingScope('team_data.member');
    if (route.scope && !scopes.includes(route.scope)) return missingScope(route.scope);
    const root = this.pathRoot(req, route, member, app);
    if (root instanceof Response) return root;
    return {
      caller: {
        kind: 'team',
        appKey: app.key,
        accountId: member.account_id,
        teamId,
        teamMemberId: member.team_member_id!,
        scopes,
        root,
      },
      app,
    };
  }

  /** Dropbox-API-Path-Root (Dropbox HTTP docs: request styles and headers): every account here has one namespace, its home, which is also its root. */
  private pathRoot(req: Request, route: RouteDef, account: AccountRecord, app: AppRecord): NonNullable<Caller['root']> | Response {
    const root: NonNullable<Caller['root']> = { namespaceId: account.namespace_id };
    if (app.access === 'app_folder') root.appFolder = `/Apps/${app.name}`;
    const header = req.headers.get('dropbox-api-path-root');
    if (header === null) return root;
    const parsed = parseJsonText(headerText(header) ?? '');
    const v = parsed?.value as Record<string, unknown> | undefined;
    const tag = typeof v === 'string' ? v : v && typeof v === 'object' ? v['.tag'] : undefined;
    if (tag === 'home') return root;
    const ns = tag === 'root' ? v?.['root'] : tag === 'namespace_id' ? v?.['namespace_id'] : undefined;
    if (typeof ns !== 'string') return badInput(route.name, 'HTTP header "Dropbox-API-Path-Root": could not decode input as JSON');
    if (ns === account.namespace_id) return root;
    const rootInfo = { '.tag': 'user', root_namespace_id: account.namespace_id, home_namespace_id: account.namespace_id };
    const error = tag === 'root' ? { '.tag': 'invalid_root', invalid_root: rootInfo } : { '.tag': 'no_permission' };
    return jsonResponse(routeErrorBody(error, this.core.salt()), 422);
  }
}

function appFolderRefused(name: string): Response {
  return badInput(name, 'Your API app is an "App Folder" app. It is not allowed to access this API function.');
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (c) => c.close() });
}

// ---- downloads ----------------------------------------------------------------------------------------------------

/** Parses a single `bytes=` range (RFC 9110 §14.1.2). `null`: serve the whole file; 'unsatisfiable': 416. */
export function parseRange(header: string | null, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (header === null) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null; // multiple or malformed ranges: ignore the header
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || (m[2] !== '' && Number(m[2]) < start)) return 'unsatisfiable';
  return { start, end };
}

function download(req: Request, r: Extract<RouteResult, { kind: 'download' }>): Response {
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Dropbox-API-Result': headerSafeJson(r.result),
    'Accept-Ranges': 'bytes',
  };
  if (r.etag) {
    headers['ETag'] = r.etag;
    const inm = req.headers.get('if-none-match');
    if (inm !== null && inm.split(',').some((t) => t.trim() === r.etag || t.trim() === '*')) {
      return new Response(null, { status: 304, headers: { ETag: r.etag, 'Dropbox-API-Result': headers['Dropbox-API-Result']! } });
    }
  }
  const range = parseRange(req.headers.get('range'), r.size);
  if (range === 'unsatisfiable') {
    return textResponse(`Requested range not satisfiable (file size ${r.size})`, 416, { 'Content-Range': `bytes */${r.size}` });
  }
  const sending = req.method === 'HEAD' ? undefined : true;
  if (range) {
    headers['Content-Range'] = `bytes ${range.start}-${range.end}/${r.size}`;
    headers['Content-Length'] = String(range.end - range.start + 1);
    return new Response(sending ? r.open(range.start, range.end) : null, { status: 206, headers });
  }
  headers['Content-Length'] = String(r.size);
  const body = r.size === 0 || !sending ? null : r.open(0, r.size - 1);
  return new Response(body, { status: 200, headers });
}
