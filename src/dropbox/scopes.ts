/**
 * Scopes: which scope each route dropkey (and `dropkey doctor`) cares about needs, and what every known scope
 * means. Route scopes and auth types come from the Stone spec (shared/dropbox-api-spec/*.stone, `attrs scope=`
 * and `auth=`), summarized in https://developers.dropbox.com/oauth-guide#dropbox-api-permissions. Calling a route without its scope → 401 missing_scope.
 */

export type RouteAuthType = 'user' | 'team' | 'app' | 'noauth' | 'app, user';

export interface RouteScope {
  /** The scope the route requires, or undefined when the spec attaches none. */
  scope: string | undefined;
  auth: RouteAuthType;
}

/** Route (as in the URL after /2/) → scope and auth type, straight from the spec. */
export const ROUTE_SCOPES: Readonly<Record<string, RouteScope>> = Object.freeze({
  'auth/token/revoke': { scope: undefined, auth: 'user' },
  'check/app': { scope: undefined, auth: 'app' },
  'check/user': { scope: 'account_info.read', auth: 'user' },
  'users/get_current_account': { scope: 'account_info.read', auth: 'user' },
  'users/get_space_usage': { scope: 'account_info.read', auth: 'user' },
  'users/features/get_values': { scope: 'account_info.read', auth: 'user' },
  'users/get_account': { scope: 'sharing.read', auth: 'user' },
  'users/get_account_batch': { scope: 'sharing.read', auth: 'user' },
  'openid/userinfo': { scope: 'openid', auth: 'user' },
  'files/list_folder': { scope: 'files.metadata.read', auth: 'app, user' },
  'files/list_folder/continue': { scope: 'files.metadata.read', auth: 'app, user' },
  'files/list_folder/get_latest_cursor': { scope: 'files.metadata.read', auth: 'user' },
  // The spec attaches a scope, but longpoll is noauth: the cursor carries the caller's rights.
  'files/list_folder/longpoll': { scope: 'files.metadata.read', auth: 'noauth' },
  'files/get_metadata': { scope: 'files.metadata.read', auth: 'user' },
  'files/list_revisions': { scope: 'files.metadata.read', auth: 'user' },
  'files/search_v2': { scope: 'files.metadata.read', auth: 'user' },
  'files/search/continue_v2': { scope: 'files.metadata.read', auth: 'user' },
  'files/download': { scope: 'files.content.read', auth: 'user' },
  'files/download_zip': { scope: 'files.content.read', auth: 'user' },
  'files/export': { scope: 'files.content.read', auth: 'user' },
  'files/get_temporary_link': { scope: 'files.content.read', auth: 'user' },
  'files/get_thumbnail_v2': { scope: 'files.content.read', auth: 'app, user' },
  'files/upload': { scope: 'files.content.write', auth: 'user' },
  'files/upload_session/start': { scope: 'files.content.write', auth: 'user' },
  'files/upload_session/start_batch': { scope: 'files.content.write', auth: 'user' },
  'files/upload_session/append_v2': { scope: 'files.content.write', auth: 'user' },
  'files/upload_session/finish': { scope: 'files.content.write', auth: 'user' },
  'files/upload_session/finish_batch_v2': { scope: 'files.content.write', auth: 'user' },
  'files/create_folder_v2': { scope: 'files.content.write', auth: 'user' },
  'files/delete_v2': { scope: 'files.content.write', auth: 'user' },
  'files/move_v2': { scope: 'files.content.write', auth: 'user' },
  'files/copy_v2': { scope: 'files.content.write', auth: 'user' },
  'files/restore': { scope: 'files.content.write', auth: 'user' },
  'files/permanently_delete': { scope: 'files.permanent_delete', auth: 'user' },
  'team/get_info': { scope: 'team_info.read', auth: 'team' },
  'team/token/get_authenticated_admin': { scope: 'team_info.read', auth: 'team' },
  'team/members/list_v2': { scope: 'members.read', auth: 'team' },
  'team/members/list/continue_v2': { scope: 'members.read', auth: 'team' },
  'team/members/get_info_v2': { scope: 'members.read', auth: 'team' },
  'team/groups/list': { scope: 'groups.read', auth: 'team' },
  'team/namespaces/list': { scope: 'team_data.member', auth: 'team' },
  'team/devices/list_members_devices': { scope: 'sessions.list', auth: 'team' },
  'team/devices/list_member_devices': { scope: 'sessions.list', auth: 'team' },
  'team_log/get_events': { scope: 'events.read', auth: 'team' },
  'team_log/get_events/continue': { scope: 'events.read', auth: 'team' },
});

/**
 * Every scope name known to exist (attached to routes in the spec, or offered by the App Console, Dropbox OAuth guide: scopes), with
 * one line on what it allows.
 */
export const KNOWN_SCOPES: Readonly<Record<string, string>> = Object.freeze({
  'account_info.read': 'view basic information about the Dropbox account (name, email, space usage)',
  'account_info.write': 'change basic account settings (e.g. profile photo)',
  'contacts.read': "view the account's manually added contacts",
  'contacts.write': "change the account's manually added contacts",
  'events.read': 'view team activity (the audit log)',
  'file_requests.read': 'view file requests',
  'file_requests.write': 'create and change file requests',
  'files.metadata.read': 'list folders and view file and folder information',
  'files.metadata.write': 'change file and folder information (e.g. tags, properties)',
  'files.content.read': 'download and read file contents',
  'files.content.write': 'upload, create, move, copy and delete files and folders',
  'files.permanent_delete': 'permanently delete files and folders',
  'files.team_metadata.read': 'view team folders and namespaces information',
  'files.team_metadata.write': 'change team folders and namespaces',
  'groups.read': 'view team groups',
  'groups.write': 'create and change team groups',
  'members.read': 'view team members',
  'members.write': 'add, change and suspend team members',
  'members.delete': 'remove team members',
  openid: 'sign in with Dropbox (OpenID Connect)',
  profile: "the user's name, for OpenID Connect",
  email: "the user's email address, for OpenID Connect",
  'sessions.list': "view team members' devices and web sessions",
  'sessions.modify': "revoke team members' devices and web sessions",
  'sharing.read': 'view shared links, shared folders and their members',
  'sharing.write': 'create and change shared links and shared folders',
  'team_data.member': "act as team members to reach the team's content",
  'team_data.content.read': 'read team content',
  'team_data.content.write': 'change team content',
  'team_data.governance.read': 'view team data governance (legal holds, retention)',
  'team_data.governance.write': 'change team data governance (legal holds, retention)',
  'team_data.team_space': 'access the team space',
  'team_info.read': 'view basic team information (name, licenses, policies)',
  'team_info.write': 'change basic team information',
});

export function isKnownScope(scope: string): boolean {
  return Object.hasOwn(KNOWN_SCOPES, scope);
}

/** The scope a route needs (leading "/2/" tolerated), or undefined when unknown or scope-free. */
export function scopeForRoute(route: string): string | undefined {
  return ROUTE_SCOPES[route.replace(/^\/+/, '').replace(/^2\//, '')]?.scope;
}

/**
 * Turns `--need` items into scopes: a scope name stays itself, a route name becomes its scope. Unknown items
 * are returned separately so the caller can report them all at once.
 */
export function resolveNeeds(items: readonly string[]): { scopes: string[]; unknown: string[] } {
  const scopes = new Set<string>();
  const unknown: string[] = [];
  for (const raw of items) {
    const item = raw.trim();
    if (!item) continue;
    if (isKnownScope(item)) scopes.add(item);
    else {
      const route = item.replace(/^\/+/, '').replace(/^2\//, '');
      const entry = ROUTE_SCOPES[route];
      if (entry) {
        if (entry.scope) scopes.add(entry.scope);
      } else unknown.push(item);
    }
  }
  return { scopes: [...scopes], unknown };
}

/**
 * Scopes in `needed` that `granted` lacks, in `needed` order, without duplicates. A granted list that is empty
 * means Dropbox reported no scopes (a legacy app, whose permissions are not scope-based): nothing is missing then.
 */
export function missingScopes(granted: readonly string[] | null | undefined, needed: readonly string[]): string[] {
  if (!granted || granted.length === 0) return [];
  const have = new Set(granted);
  return [...new Set(needed)].filter((s) => !have.has(s));
}

/** The scopes the given routes need, deduplicated. */
export function scopesForRoutes(routes: readonly string[]): string[] {
  const out = new Set<string>();
  for (const r of routes) {
    const s = scopeForRoute(r);
    if (s) out.add(s);
  }
  return [...out];
}
