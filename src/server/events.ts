/**
 * In-process events about connections, emitted by the server's routes and background work, consumed by
 * webhooks (docs/webhooks.md) and anything else that subscribes. Listeners run after the emitting request's work is
 * done; a throwing or slow listener never fails the request (errors go to onError).
 *
 * The CLI does not emit on this bus (it runs in another process): it writes the same events straight into the
 * webhook outbox of the shared store (src/cli/activity.ts), and the server's delivery worker sends them.
 */
import type { ConnectionEventType } from '../connections/types.js';

/** The connection events (the list lives with the facade, which reports them to the CLI's sink too). */
export type ServerEventType = ConnectionEventType;

export interface ServerEvent {
  type: ServerEventType;
  /** Epoch ms. */
  at: number;
  connection: string;
  /** Facts safe to send to a webhook (never tokens): app, account_id, email, reason... */
  data: Record<string, unknown>;
}

export type EventListener = (event: ServerEvent) => void | Promise<void>;

export class ServerEvents {
  /** When each connection last emitted connection.refresh_failed on this bus (jobs/events.ts throttles on it). */
  readonly refreshFailedAt = new Map<string, number>();
  readonly #listeners = new Set<EventListener>();
  readonly #onError: (err: unknown, event: ServerEvent) => void;

  constructor(onError: (err: unknown, event: ServerEvent) => void = () => {}) {
    this.#onError = onError;
  }

  /** Returns an unsubscribe function. */
  on(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(event: ServerEvent): void {
    for (const l of this.#listeners) {
      try {
        const r = l(event);
        if (r && typeof (r as Promise<void>).catch === 'function') (r as Promise<void>).catch((err) => this.#onError(err, event));
      } catch (err) {
        this.#onError(err, event);
      }
    }
  }
}
