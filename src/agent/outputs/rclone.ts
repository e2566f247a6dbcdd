/**
 * `rclone` output: one remote's `token` in an existing rclone.conf, every other line kept as it was.
 *
 * By default the token goes in without a refresh token and the remote keeps no client secret: rclone uses an
 * access token as is while its expiry is ahead (Go's oauth2 only refreshes an expired token), and the agent rewrites
 * the file before that. A process that reads the file once and runs for days (`rclone mount`) cannot see those
 * rewrites, so `includeRefreshToken` writes the refresh token with client_id/client_secret and lets rclone refresh.
 */
import type { RcloneOutputOptions, RenderOutput } from './types.js';
import { parseRcloneConf, rcloneRemote, rcloneTokenJson, setRcloneRemote } from '../../formats/rclone-conf.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';

export const renderRclone: RenderOutput<RcloneOutputOptions> = (previous, snapshot, options) => {
  const text = previous ?? '';
  const existing = rcloneRemote(parseRcloneConf(text), options.remote);
  if (existing && existing['type'] !== undefined && existing['type'] !== 'dropbox') {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `rclone.conf: remote "${options.remote}" is of type ${existing['type']}, not dropbox; dropkey will not write a Dropbox token into it`, {
      hint: 'Name a Dropbox remote in the output (or a new name: dropkey creates it).',
    });
  }
  const expiresAt = snapshot.expiresAt === null ? null : snapshot.expiresAt.getTime();
  const values: Record<string, string | null> = {};
  if (options.includeRefreshToken) {
    const long = snapshot.longLived;
    if (!long || snapshot.appKey === null) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `rclone output "${options.remote}" asks for the refresh token, but the token source does not hand it out (a remote dropkey serve never does)`, {
        hint: 'Take tokens from the local store for this output, or drop includeRefreshToken and let dropkey keep the token fresh.',
      });
    }
    values['client_id'] = snapshot.appKey;
    values['client_secret'] = long.appSecret;
    values['token'] = rcloneTokenJson({ accessToken: snapshot.accessToken, expiresAt, refreshToken: long.refreshToken });
  } else {
    // The promise of the default is a file without long-lived secrets, so a secret left there (by an earlier
    // includeRefreshToken, `dropkey export --format rclone` or rclone config) goes; client_id is not a secret.
    values['client_secret'] = null;
    values['token'] = rcloneTokenJson({ accessToken: snapshot.accessToken, expiresAt });
  }
  return setRcloneRemote(text, options.remote, values, { type: 'dropbox' });
};
