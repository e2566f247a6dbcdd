/**
 * The default seed: what `npx dropkey emulator` offers with no configuration (docs/emulator.md).
 * The key and secret are public on purpose: they only work against a local emulator.
 */
import { DEFAULT_TEAM_SCOPES, DEFAULT_USER_SCOPES, type Seed } from './state.js';

export const DEMO_APP_KEY = 'dropkey-demo-app';
export const DEMO_APP_SECRET = 'dropkey-demo-secret';
export const DEMO_APP_NAME = 'dropkey demo';
/** Loopback on any port and any path (see docs/emulator.md, "Redirect URIs"). */
export const DEMO_REDIRECT_URIS = ['http://127.0.0.1/*', 'http://localhost/*'];

export const DEMO_TEAM_APP_KEY = 'dropkey-demo-team-app';
export const DEMO_TEAM_APP_SECRET = 'dropkey-demo-team-secret';
export const DEMO_TEAM_APP_NAME = 'dropkey team demo';

export const DEMO_ACCOUNT_EMAIL = 'demo@example.com';
export const DEMO_TEAM_NAME = 'Example Team';
export const DEMO_TEAM_ADMIN_EMAIL = 'admin@team.example.com';
export const DEMO_TEAM_MEMBER_EMAILS = ['ana@team.example.com', 'bo@team.example.com'];

export function defaultSeed(): Seed {
  return {
    apps: [
      {
        key: DEMO_APP_KEY,
        secret: DEMO_APP_SECRET,
        name: DEMO_APP_NAME,
        redirect_uris: DEMO_REDIRECT_URIS,
        scopes: DEFAULT_USER_SCOPES,
        access: 'full',
        team: false,
      },
      {
        key: DEMO_TEAM_APP_KEY,
        secret: DEMO_TEAM_APP_SECRET,
        name: DEMO_TEAM_APP_NAME,
        redirect_uris: DEMO_REDIRECT_URIS,
        scopes: DEFAULT_TEAM_SCOPES,
        access: 'full',
        team: true,
      },
    ],
    accounts: [
      { email: DEMO_ACCOUNT_EMAIL, given_name: 'Demo', surname: 'User' },
      { email: DEMO_TEAM_ADMIN_EMAIL, given_name: 'Ada', surname: 'Admin', team: { name: DEMO_TEAM_NAME }, team_admin: true },
      { email: DEMO_TEAM_MEMBER_EMAILS[0]!, given_name: 'Ana', surname: 'Member', team: { name: DEMO_TEAM_NAME } },
      { email: DEMO_TEAM_MEMBER_EMAILS[1]!, given_name: 'Bo', surname: 'Member', team: { name: DEMO_TEAM_NAME } },
    ],
  };
}
