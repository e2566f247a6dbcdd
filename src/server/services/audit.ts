/**
 * The audit log: who did what to which connection, app, key or webhook. Every surface that changes something
 * (API, web UI, CLI) writes through this one class, so the entries look the same whoever acted.
 */
import type { NewAuditEntry, ServerStore } from '../../store/server-types.js';

export interface AuditDeps {
  serverStore: Pick<ServerStore, 'appendAudit'>;
  /** Epoch ms. */
  clock: () => number;
  logger: { error(obj: object, msg: string): void };
}

export class AuditLog {
  constructor(private readonly deps: AuditDeps) {}

  /** Writes one entry now. An audit failure is logged, never thrown: the action it records already happened. */
  async write(actor: string, action: string, target: string | null, details: Record<string, unknown> = {}): Promise<void> {
    const entry: NewAuditEntry = { at: this.deps.clock(), actor, action, target, details };
    try {
      await this.deps.serverStore.appendAudit([entry]);
    } catch (err) {
      this.deps.logger.error({ err, action, target }, 'could not write the audit log');
    }
  }
}
