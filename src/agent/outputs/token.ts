/**
 * `token`: the bare access token and a newline, the file programs read with `open(path).read().strip()` or
 * `$(cat path)` (the Python SDK's `oauth2_access_token`, curl's `-H @file` after a `sed`).
 */
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { RenderOutput } from './types.js';

/** What a token file may hold: one line of token characters (Dropbox tokens are [A-Za-z0-9._-]) or nothing. */
const TOKEN_FILE = /^[A-Za-z0-9._~+/=-]*\s*$/;

export const renderToken: RenderOutput<Record<string, never>> = (previous, snapshot) => {
  // The whole file is ours, but a path typed by mistake (a script, a config) must not be replaced by a token.
  if (previous !== null && !TOKEN_FILE.test(previous)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'the file exists and holds something other than a bare access token, so it was not overwritten.', {
      hint: 'Point the output at a file of its own (it will be created), or delete this one if it is an old token file.',
    });
  }
  return `${snapshot.accessToken}\n`;
};
