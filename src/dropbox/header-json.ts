/**
 * "HTTP header safe" JSON for the Dropbox-API-Arg request header and the Dropbox-API-Result response header:
 * 0x7F and every non-ASCII UTF-16 code unit is written as \uXXXX, so an astral character becomes an escaped
 * surrogate pair. Source: https://www.dropbox.com/developers/documentation/http/documentation (docs: developers/reference/json-encoding; js:src/utils.js
 * httpHeaderSafeJson). JSON.stringify already escapes the C0 controls.
 */
export function httpHeaderSafeJson(value: unknown): string {
  const json = JSON.stringify(value === undefined ? null : value);
  return json.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
