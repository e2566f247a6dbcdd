/**
 * Shared by the consumer tests (rclone, the Python SDK, Airflow's file formats): a connection made through the
 * built CLI against the emulator, and the snapshot an agent output is rendered from, taken with `dropkey token --json`
 * after the clocks were moved.
 */
import type { TokenSnapshot } from '../../src/agent/outputs/types.js';
import type { CliEnv } from '../cli/cli-helpers.js';

export async function snapshotOf(t: CliEnv, connection: string, appKey: string): Promise<TokenSnapshot> {
  const r = await t.run(['token', '--connection', connection, '--json']);
  if (r.code !== 0) throw new Error(`dropkey token failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { access_token: string; expires_at: string | null; scopes: string[]; account_id: string | null; team_id: string | null; email: string | null };
  return {
    connection,
    accessToken: j.access_token,
    expiresAt: j.expires_at === null ? null : new Date(j.expires_at),
    scopes: j.scopes,
    account: { id: j.account_id, email: j.email, name: null },
    team: j.team_id === null ? null : { id: j.team_id, name: null },
    appKey,
  };
}

/** Puts a file into the account through the emulator's upload route. */
export async function upload(emuUrl: string, token: string, path: string, text: string): Promise<void> {
  const res = await fetch(`${emuUrl}/2/files/upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'dropbox-api-arg': JSON.stringify({ path, mode: 'overwrite' }) },
    body: text,
  });
  if (!res.ok) throw new Error(`upload ${path}: ${res.status} ${await res.text()}`);
}
