/** Every output format, by name: the agent renders an output's file with `renderOutput`. */
import type { OutputConfig } from '../config.js';
import { renderAirflow } from './airflow.js';
import { renderEnv } from './env.js';
import { renderJson } from './json.js';
import { renderRclone } from './rclone.js';
import { renderToken } from './token.js';
import type { TokenSnapshot } from './types.js';

export function renderOutput(o: OutputConfig, previous: string | null, snapshot: TokenSnapshot): string {
  switch (o.format) {
    case 'token':
      return renderToken(previous, snapshot, {});
    case 'json':
      return renderJson(previous, snapshot, {});
    case 'env':
      return renderEnv(previous, snapshot, o.env);
    case 'rclone':
      return renderRclone(previous, snapshot, o.rclone);
    case 'airflow':
      return renderAirflow(previous, snapshot, o.airflow);
  }
}

/** What an output writes, in a few words (for --check and logs). */
export function describeOutput(o: OutputConfig): string {
  switch (o.format) {
    case 'token':
      return 'the bare access token';
    case 'json':
      return 'a JSON object (access_token, expires_at, scopes, account, team)';
    case 'env':
      return `dotenv ${o.env.variables.join(', ')}${o.env.expiryVariable ? ` and ${o.env.expiryVariable}` : ''}`;
    case 'rclone':
      return `the token of rclone remote [${o.rclone.remote}]${o.rclone.includeRefreshToken ? ' with the refresh token and app credentials' : ' (no refresh token or secret)'}`;
    case 'airflow':
      return `Airflow connection "${o.airflow.connId}" (${o.airflow.form} form; token in ${o.airflow.field})`;
  }
}

/** Whether an output needs the refresh token and app secret (rclone's include_refresh_token). */
export function wantsLongLived(o: OutputConfig): boolean {
  return o.format === 'rclone' && o.rclone.includeRefreshToken;
}
