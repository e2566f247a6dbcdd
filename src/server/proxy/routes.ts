/**
 * Which Dropbox host serves a route, and in which style (https://www.dropbox.com/developers/documentation/http/documentation). The proxy builds every upstream
 * URL from this table and the configured base URLs, never from anything in the request but the route name.
 *
 * ROUTE_TABLE lists every route whose host or style differs from the spec's defaults (host "api", style "rpc",
 * stone_cfg.stone). It was generated from shared/dropbox-api-spec/*.stone (HEAD 0d994eb): for each
 * `route <name>[:<version>]` its `attrs host` and `attrs style`, named as in the URL (`ns/name`, `_vN` for N > 1,
 * Dropbox HTTP docs: hosts "Route versioning"). The spec's `host` attribute decides the host, not the style: files/paper/create is an
 * upload on the api host, files/get_thumbnail_batch an rpc on the content host.
 */

export type HostKind = 'api' | 'content' | 'notify';
export type RouteStyle = 'rpc' | 'upload' | 'download';

export interface RouteInfo {
  host: HostKind;
  style: RouteStyle;
  /** The spec's `auth = "noauth"`: Dropbox's SDKs send no Authorization header, so neither does the proxy. */
  noauth?: true;
}

export const ROUTE_TABLE: Readonly<Record<string, RouteInfo>> = Object.freeze({
  // From the stored spec (files.stone).
  'files/alpha/upload': { host: 'content', style: 'upload' },
  'files/download': { host: 'content', style: 'download' },
  'files/download_zip': { host: 'content', style: 'download' },
  'files/export': { host: 'content', style: 'download' },
  'files/get_preview': { host: 'content', style: 'download' },
  'files/get_thumbnail': { host: 'content', style: 'download' },
  'files/get_thumbnail_v2': { host: 'content', style: 'download' },
  'files/get_thumbnail_batch': { host: 'content', style: 'rpc' },
  'files/list_folder/longpoll': { host: 'notify', style: 'rpc', noauth: true },
  'files/paper/create': { host: 'api', style: 'upload' },
  'files/paper/update': { host: 'api', style: 'upload' },
  'files/upload': { host: 'content', style: 'upload' },
  'files/upload_session/append': { host: 'content', style: 'upload' },
  'files/upload_session/append_v2': { host: 'content', style: 'upload' },
  'files/upload_session/append_batch': { host: 'content', style: 'upload' },
  'files/upload_session/finish': { host: 'content', style: 'upload' },
  'files/upload_session/start': { host: 'content', style: 'upload' },
  // Namespaces the stored spec subset leaves out (sharing.stone, paper.stone of the full dropbox-api-spec).
  'sharing/get_shared_link_file': { host: 'content', style: 'download' },
  'paper/docs/download': { host: 'api', style: 'download' },
  'paper/docs/create': { host: 'api', style: 'upload' },
  'paper/docs/update': { host: 'api', style: 'upload' },
});

const DEFAULT_ROUTE: RouteInfo = Object.freeze({ host: 'api', style: 'rpc' });

/**
 * A route name as it appears after `/2/`: lowercase words of letters, digits and `_`, joined by single `/`
 * (every route in the spec has this shape). Anything else (dots, percent-escapes, empty segments, upper case)
 * is refused, so no path can climb out of `/2/` upstream.
 */
const ROUTE_NAME = /^[a-z0-9_]+(?:\/[a-z0-9_]+){0,5}$/;

export function isRouteName(route: string): boolean {
  return route.length <= 200 && ROUTE_NAME.test(route);
}

export function routeInfo(route: string): RouteInfo {
  return ROUTE_TABLE[route] ?? DEFAULT_ROUTE;
}
