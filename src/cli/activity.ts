/**
 * What the CLI does goes to the same audit log as the web UI and the API, and the connection events it causes reach
 * a running `dropkey serve`'s webhooks. The CLI and the server share the store, so no server needs to be found:
 * the audit entry is written to the server store, and the event is queued in the webhook outbox, whose deliveries
 * the server's worker sends at its next poll (docs/webhooks.md). Without a server nothing is sent, and the entries
 * wait for one.
 *
 * The actor is `cli:<OS user>`. A failure to record never fails the command (the action already happened): it is
 * reported on stderr as a warning.
 */
import { randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import type { Activity, ActivitySink } from '../connections/types.js';
import type { ServerEvent } from '../server/events.js';
import { classifyRefreshError } from '../server/jobs/events.js';
import { AuditLog } from '../server/services/audit.js';
import { queueEvent } from '../server/webhooks/service.js';
import type { ServerStore } from '../store/server-types.js';
import type { WebhookStore } from '../store/webhook-types.js';

/** `cli:<user>`: the OS account that ran the command (USER / USERNAME when the system cannot say). */
export function cliActor(env: Record<string, string | undefined>, osUser: () => string = () => userInfo().username): string {
  let user = '';
  try {
    user = osUser();
  } catch {
    // no passwd entry (a container running as an arbitrary uid)
  }
  user ||= env['USER'] ?? env['USERNAME'] ?? env['LOGNAME'] ?? '';
  const clean = user.replace(/[^A-Za-z0-9_.@-]/g, '').slice(0, 64);
  return `cli:${clean || 'unknown'}`;
}

export interface CliActivityOptions {
  server: Pick<ServerStore, 'appendAudit'>;
  webhooks: Pick<WebhookStore, 'enqueueEvent'>;
  actor: string;
  /** Epoch ms. */
  now: () => number;
  /** Where a failure to record is reported (one line, prefixed "dropkey: warning:"). */
  warn: (line: string) => void;
  random?: (n: number) => Buffer;
}

function what(a: Pick<Activity, 'action' | 'target'>): string {
  return a.target === null ? a.action : `${a.action} "${a.target}"`;
}

function reason(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.split('\n')[0]!.slice(0, 300);
}

/** The event a refresh failure announces, as the server classifies it (needs_reauth, refresh_failed, or none). */
function eventOf(a: Activity, at: number): ServerEvent | null {
  if (a.event) return { type: a.event.type, at, connection: a.event.connection, data: a.event.data };
  if (a.error === undefined || a.target === null) return null;
  const c = classifyRefreshError(a.error);
  if (!c) return null;
  return { type: c.type, at, connection: a.target, data: { reason: c.reason, message: c.message, detected_by: 'cli' } };
}

/** The sink the CLI hands the facade (DropkeyOptions.onActivity); it never throws. */
export function cliActivitySink(o: CliActivityOptions): ActivitySink {
  const random = o.random ?? randomBytes;
  return async (a) => {
    let failure: unknown;
    const audit = new AuditLog({
      serverStore: o.server,
      clock: o.now,
      logger: { error: (obj) => (failure = (obj as { err?: unknown }).err) },
    });
    await audit.write(o.actor, a.action, a.target, a.details);
    if (failure !== undefined) o.warn(`dropkey: warning: ${what(a)} was done, but could not be written to the audit log: ${reason(failure)}`);
    const event = eventOf(a, o.now());
    if (!event) return;
    try {
      await queueEvent(o.webhooks, event, o.now(), random);
    } catch (err) {
      o.warn(`dropkey: warning: ${what(a)} was done, but its ${event.type} event could not be queued for webhooks: ${reason(err)}`);
    }
  };
}
