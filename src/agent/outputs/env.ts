/**
 * `env`: a dotenv file with the token under the names the consumer reads (DROPBOX_ACCESS_TOKEN, duplicity's
 * DPBX_ACCESS_TOKEN, ...) and its expiry. The file is edited in place (src/formats/dotenv.ts): our variables are
 * rewritten on their lines, missing ones appended, and every other line and comment kept byte for byte, so an env
 * file shared with other settings (docker `--env-file`, systemd `EnvironmentFile=`) stays theirs.
 */
import { setDotenv } from '../../formats/dotenv.js';
import { rfc3339 } from './json.js';
import type { RenderOutput } from './types.js';

export interface EnvOutputOptions {
  /** Variables that receive the access token (at least one). */
  variables: readonly string[];
  /** The variable that receives the expiry (RFC 3339, UTC), or null for none. */
  expiryVariable: string | null;
}

export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const renderEnv: RenderOutput<EnvOutputOptions> = (previous, snapshot, options) => {
  const values: Record<string, string | null> = {};
  for (const name of options.variables) values[name] = snapshot.accessToken;
  // A token without a known expiry must not leave an old expiry behind.
  if (options.expiryVariable !== null) values[options.expiryVariable] = snapshot.expiresAt === null ? null : rfc3339(snapshot.expiresAt);
  const next = setDotenv(previous ?? '', values);
  return next.endsWith('\n') ? next : `${next}\n`;
};
