import type { Command } from './context.js';

/**
 * The command table. Each command is imported only when it runs, so `dropkey token` loads
 * nothing it does not use (start-up time is a measured target, see bench/).
 */
export const commands: Record<string, { summary: string; load: () => Promise<{ default: Command }> }> = {
  demo: { summary: 'See the whole flow work against a built-in Dropbox emulator (no account needed)', load: () => import('./commands/demo.js') },
  app: { summary: 'Register, list or remove Dropbox apps (key, secret, scopes)', load: () => import('./commands/app.js') },
  login: { summary: 'Connect a Dropbox account (browser + loopback redirect, or --no-redirect to paste a code)', load: () => import('./commands/login.js') },
  import: { summary: 'Store a connection from an existing refresh token (or a short-lived access token)', load: () => import('./commands/import.js') },
  token: { summary: 'Print a valid access token (refreshing it when needed)', load: () => import('./commands/token.js') },
  exec: { summary: 'Run a command with DROPBOX_ACCESS_TOKEN set to a valid token', load: () => import('./commands/exec.js') },
  export: { summary: 'Print credentials for another tool (env, json, rclone, airflow); prints secrets', load: () => import('./commands/export.js') },
  list: { summary: 'List connections (account, team, scopes, expiry, state)', load: () => import('./commands/list.js') },
  refresh: { summary: "Refresh a connection's access token now", load: () => import('./commands/refresh.js') },
  revoke: { summary: 'Revoke a connection at Dropbox, then delete it locally', load: () => import('./commands/revoke.js') },
  doctor: { summary: 'Explain what is wrong with a connection or a pasted token, and how to fix it', load: () => import('./commands/doctor.js') },
  serve: { summary: 'Run the dropkey service (token API, connect links, metrics)', load: () => import('./commands/serve.js') },
  apikey: { summary: 'Create, list or revoke API keys for dropkey serve', load: () => import('./commands/apikey.js') },
  keys: { summary: 'Show, rotate or generate master keys (re-encrypts every stored secret)', load: () => import('./commands/keys.js') },
  emulator: { summary: 'Run a local Dropbox emulator (OAuth, files, team routes)', load: () => import('./commands/emulator.js') },
};
