/**
 * Points the official JS SDK (dropbox@10.34.0, unmodified) at a local server through its `fetch` option:
 * https://github.com/dropbox/dropbox-sdk-js, docs/emulator.md ("Pointing clients at it"). 10.34 hard-codes https and the Dropbox hosts, and `filesDownload` calls
 * node-fetch's `res.buffer()`, so this wraps node-fetch@2 and only rewrites the scheme+host.
 */
import nodeFetch from 'node-fetch';

const DROPBOX_ORIGINS = /^https:\/\/(?:api\.dropboxapi\.com|content\.dropboxapi\.com|notify\.dropboxapi\.com|www\.dropbox\.com|dropbox\.com)(?=[/?#]|$)/;

export function rewriteDropboxUrl(url: string, base: string): string {
  return url.replace(DROPBOX_ORIGINS, base.replace(/\/+$/, ''));
}

/** A fetch for `new Dropbox({fetch})` / `new DropboxAuth({fetch})` that sends every Dropbox host to `base`. */
export function emulatorFetch(base: string): (url: string, init?: any) => Promise<any> {
  return (url: string, init?: any) => {
    const target = rewriteDropboxUrl(String(url), base);
    if (!target.startsWith(base)) throw new Error(`refusing to send a request outside the emulator: ${String(url)}`);
    return nodeFetch(target, init);
  };
}
