/**
 * What an admin does to a connection from the API or the web UI: refresh it now, revoke it, test it. Each action
 * exists once, here, with its side effects (token cache, connection events for webhooks, audit entries), so the
 * two surfaces cannot drift apart; they only differ in how they show the outcome.
 */
import type { Dropkey, RevokeResult } from '../../connections/dropkey.js';
import type { ConnectionInfo } from '../../connections/types.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { ServerEvents } from '../events.js';
import { reportRefreshFailure } from '../jobs/events.js';
import type { AuditLog } from './audit.js';
import type { ServerPaths } from './paths.js';
import { type TokenService, withReconnectUrl } from './tokens.js';

export interface ConnectionServiceDeps {
  dropkey: Dropkey;
  audit: AuditLog;
  tokens: TokenService;
  events: ServerEvents;
  paths: ServerPaths;
  /** Epoch ms. */
  clock: () => number;
}

/** Who asked, and through which surface (the `detected_by` of the connection events a failure emits). */
export interface ActionSource {
  /** The audit actor: `apikey:<name>` or `admin:<email>`. */
  actor: string;
  detectedBy: 'refresh_request' | 'ui';
  signal?: AbortSignal;
}

export type TestResult = { ok: true; message: string } | { ok: false; error: DropkeyError };

export class ConnectionService {
  constructor(private readonly deps: ConnectionServiceDeps) {}

  /**
   * Forces a refresh. A failure emits the connection events (refresh_failed, needs_reauth), is audited, and is
   * thrown with the reconnect URL when the connection needs an admin; it is never a success, even while the old
   * token still works (the facade says so in the error). An unknown connection is not a failed refresh: it is
   * thrown as it is, with nothing recorded.
   */
  async refresh(name: string, source: ActionSource): Promise<ConnectionInfo> {
    const { dropkey, tokens, audit } = this.deps;
    tokens.invalidate(name);
    let info: ConnectionInfo;
    try {
      info = await dropkey.refresh(name, { force: true, ...(source.signal ? { signal: source.signal } : {}) });
    } catch (err) {
      if (err instanceof DropkeyError && err.code === ErrorCodes.NOT_FOUND) throw err;
      reportRefreshFailure(this.deps, name, err, { detected_by: source.detectedBy });
      await audit.write(source.actor, 'connection.refresh_failed', name, { code: err instanceof DropkeyError ? err.code : 'unknown' });
      throw withReconnectUrl(this.deps.paths, name, err);
    } finally {
      tokens.invalidate(name);
    }
    await audit.write(source.actor, 'connection.refreshed', name);
    return info;
  }

  /**
   * Revokes the token at Dropbox and deletes the connection (see Dropkey.revoke for `force`), then drops it from
   * the token cache, audits it and emits connection.revoked with what the connection was.
   */
  async revoke(name: string, source: Omit<ActionSource, 'detectedBy'> & { force?: boolean }): Promise<RevokeResult> {
    const { dropkey, tokens, audit, events } = this.deps;
    const before = await dropkey.get(name);
    const result = await dropkey.revoke(name, {
      ...(source.force ? { force: true } : {}),
      ...(source.signal ? { signal: source.signal } : {}),
    });
    tokens.invalidate(name);
    await audit.write(source.actor, 'connection.revoked', name, { revoked_at_dropbox: result.revokedAtDropbox });
    events.emit({
      type: 'connection.revoked',
      at: this.deps.clock(),
      connection: name,
      data: { app: before.app, account_id: before.accountId, email: before.email, revoked_at_dropbox: result.revokedAtDropbox },
    });
    return result;
  }

  /**
   * Asks Dropbox who the connection is (users/get_current_account, or team/get_info for a team app) and says it in
   * plain words; the outcome is audited either way. Dropbox's refusal is a result, not a throw; other errors
   * (an unknown connection, a bug) are thrown.
   */
  async test(name: string, source: Omit<ActionSource, 'detectedBy'>): Promise<TestResult> {
    const { dropkey, audit } = this.deps;
    const info = await dropkey.get(name);
    const app = await dropkey.getApp(info.app).catch(() => undefined);
    const opts = source.signal ? { signal: source.signal } : {};
    let result: TestResult;
    try {
      const client = dropkey.client(name);
      if (app?.team) {
        const t = await client.rpc<{ name?: string; num_provisioned_users?: number }>('team/get_info', undefined, opts);
        result = { ok: true, message: `Dropbox answered: team "${t.name ?? '?'}" with ${t.num_provisioned_users ?? '?'} members.` };
      } else {
        const a = await client.rpc<{ email?: string; name?: { display_name?: string } }>('users/get_current_account', undefined, opts);
        result = { ok: true, message: `Dropbox answered: ${a.name?.display_name ?? 'account'} <${a.email ?? '?'}>.` };
      }
      await audit.write(source.actor, 'connection.tested', name, { ok: true });
    } catch (err) {
      if (!(err instanceof DropkeyError)) throw err;
      result = { ok: false, error: err };
      await audit.write(source.actor, 'connection.tested', name, { ok: false, code: err.code });
    }
    return result;
  }
}
