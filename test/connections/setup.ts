/**
 * Shared set-up for the connections tests: an emulator (in-process or listening), a fresh store in a temp dir,
 * a Dropkey on both with an injected clock, and helpers to count token-endpoint calls and read stored secrets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Dropkey } from '../../src/connections/dropkey.js';
import type { DropkeyOptions } from '../../src/connections/types.js';
import { dropboxUrlsFromBase } from '../../src/dropbox/hosts.js';
import { openStore } from '../../src/store/index.js';
import { startEmulator, type StartedEmulator } from '../helpers/emulator.js';

export interface Rig {
  emu: StartedEmulator;
  dk: Dropkey;
  home: string;
  masterKey: string;
  /** The local (dropkey) clock, epoch ms. */
  clock: { now: number };
  /** Sleeps requested by the retry logic (ms); they return at once. */
  sleeps: number[];
  /** Moves both clocks: dropkey's and the emulator's. */
  advance(seconds: number): Promise<void>;
  tokenCalls(): Promise<number>;
  /** Reads a connection straight from a second store handle (decrypting with the master key). */
  stored(name: string): Promise<{ refreshToken: string | null; accessToken: string | null; state: string; lastError: string | null } | undefined>;
  /** A Dropbox app at the emulator, registered in dropkey under `name`, plus one account. */
  appWithAccount(opts?: { name?: string; team?: boolean; scopes?: string[]; secret?: boolean; access?: 'full' | 'app_folder' }): Promise<{
    name: string;
    key: string;
    accountId: string;
    email: string;
    grant(scopes?: string[], type?: string): Promise<{ access_token: string; refresh_token?: string; expires_in?: number }>;
  }>;
  close(): Promise<void>;
}

export async function makeRig(opts: { listen?: boolean; dropkey?: Partial<DropkeyOptions> } = {}): Promise<Rig> {
  const emu = await startEmulator({}, { listen: opts.listen ?? false });
  const home = mkdtempSync(join(tmpdir(), 'dropkey-conn-'));
  const masterKey = randomBytes(32).toString('base64');
  const clock = { now: Date.now() };
  const sleeps: number[] = [];
  const dk = await Dropkey.open({
    home,
    masterKey,
    urls: dropboxUrlsFromBase(emu.url),
    fetch: emu.fetch as typeof fetch,
    now: () => clock.now,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    retry: { attemptTimeoutMs: 5_000 },
    lockWaitMs: 10_000,
    ...opts.dropkey,
  });
  let seq = 0;
  const rig: Rig = {
    emu,
    dk,
    home,
    masterKey,
    clock,
    sleeps,
    async advance(seconds) {
      clock.now += seconds * 1000;
      await emu.control.advanceClock(seconds);
    },
    async tokenCalls() {
      return (await emu.control.requests()).filter((r) => /\/oauth2\/token$/.test(r.path.split('?')[0] ?? '')).length;
    },
    async stored(name) {
      const s = await openStore({ home, masterKey });
      try {
        const c = await s.getConnection(name);
        return c && { refreshToken: c.refreshToken, accessToken: c.accessToken, state: c.state, lastError: c.lastError };
      } finally {
        await s.close();
      }
    },
    async appWithAccount(o = {}) {
      seq += 1;
      const team = o.team ?? false;
      const scopes = o.scopes ?? (team ? ['team_info.read', 'members.read', 'sessions.list'] : ['account_info.read', 'files.metadata.read', 'files.content.read', 'files.content.write']);
      const app = await emu.control.createApp({ scopes, team, access: o.access ?? 'full', redirect_uris: ['http://127.0.0.1:53682/callback'] });
      const account = await emu.control.createAccount(team ? { team: { name: `Team ${seq}` }, team_admin: true } : {});
      const name = o.name ?? `app${seq}`;
      await dk.addApp({ name, key: app.key, ...(o.secret === false ? {} : { secret: app.secret! }), scopes, team, access: o.access ?? 'full' });
      return {
        name,
        key: app.key,
        accountId: account.account_id,
        email: String(account.email ?? ''),
        grant: (s, type = 'offline') =>
          emu.control.grant({ app: app.key, account: account.account_id, token_access_type: type, ...(s ? { scopes: s } : {}) }),
      };
    },
    async close() {
      await dk.close();
      await emu.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
  return rig;
}
