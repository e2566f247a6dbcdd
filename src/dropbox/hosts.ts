/**
 * Dropbox base URLs. Nothing in dropkey hard-codes a Dropbox host outside this file: every URL is built from a
 * DropboxUrls value that entry points derive from options or the environment.
 * Sources: https://www.dropbox.com/developers/documentation/http/documentation (hosts), Dropbox docs: oauth2/authorize (authorize page on www), Dropbox docs: oauth2/token (token endpoint on api).
 */
export interface DropboxUrls {
  /** The consent page, full URL (https://www.dropbox.com/oauth2/authorize). */
  authorize: string;
  /** The token endpoint, full URL (https://api.dropboxapi.com/oauth2/token). */
  token: string;
  /** RPC host base, no trailing slash (https://api.dropboxapi.com); routes are `${api}/2/<route>`. */
  api: string;
  /** Upload/download host base (https://content.dropboxapi.com). */
  content: string;
  /** Longpoll host base (https://notify.dropboxapi.com). */
  notify: string;
}

export const DROPBOX_URLS: Readonly<DropboxUrls> = Object.freeze({
  authorize: 'https://www.dropbox.com/oauth2/authorize',
  token: 'https://api.dropboxapi.com/oauth2/token',
  api: 'https://api.dropboxapi.com',
  content: 'https://content.dropboxapi.com',
  notify: 'https://notify.dropboxapi.com',
});

function trimSlash(u: string): string {
  return u.replace(/\/+$/, '');
}

/** Every host on one base URL, by path, as `dropkey emulator` serves them. */
export function dropboxUrlsFromBase(base: string): DropboxUrls {
  const b = trimSlash(base);
  return { authorize: `${b}/oauth2/authorize`, token: `${b}/oauth2/token`, api: b, content: b, notify: b };
}

/**
 * Reads DROPKEY_DROPBOX_URL (one base for all hosts) and the per-host overrides
 * DROPKEY_DROPBOX_AUTHORIZE_URL, DROPKEY_DROPBOX_TOKEN_URL, DROPKEY_DROPBOX_API_URL,
 * DROPKEY_DROPBOX_CONTENT_URL, DROPKEY_DROPBOX_NOTIFY_URL. Only entry points call this.
 */
export function dropboxUrlsFromEnv(env: Record<string, string | undefined>): DropboxUrls {
  const base = env['DROPKEY_DROPBOX_URL'];
  const urls: DropboxUrls = base ? dropboxUrlsFromBase(base) : { ...DROPBOX_URLS };
  const pick = (name: string): string | undefined => {
    const v = env[name];
    return v ? trimSlash(v) : undefined;
  };
  return {
    authorize: pick('DROPKEY_DROPBOX_AUTHORIZE_URL') ?? urls.authorize,
    token: pick('DROPKEY_DROPBOX_TOKEN_URL') ?? urls.token,
    api: pick('DROPKEY_DROPBOX_API_URL') ?? urls.api,
    content: pick('DROPKEY_DROPBOX_CONTENT_URL') ?? urls.content,
    notify: pick('DROPKEY_DROPBOX_NOTIFY_URL') ?? urls.notify,
  };
}
