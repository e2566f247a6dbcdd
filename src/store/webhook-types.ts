/**
 * Storage for `dropkey serve`'s background work (docs/webhooks.md): webhook endpoints, the event outbox with its
 * delivery log, and the run records that make scheduled jobs run once across every instance sharing the store
 * (docs/deploying.md ("What the cluster guarantees")).
 *
 * The outbox is the source of truth for delivery: an event is written with one delivery row per matching endpoint
 * in one transaction, and workers claim due deliveries with a lease (claimedUntil), so deliveries survive restarts
 * and a worker that dies mid-attempt only delays its delivery (at-least-once: receivers dedupe on the event id).
 *
 * Signing secrets are the only secrets here; drivers encrypt them with the Keyring and never return them from list
 * calls. Times are epoch ms, "now" is passed in by the caller (an injected clock).
 */

export interface WebhookEndpoint {
  id: string;
  url: string;
  description: string;
  /** Event types sent to this endpoint, or ['*'] for all. */
  events: string[];
  enabled: boolean;
  createdAt: number;
  createdBy: string;
  updatedAt: number;
}

export interface NewWebhookEndpoint {
  url: string;
  description: string;
  events: string[];
  /** The signing secret in plain text; encrypted by the driver. */
  secret: string;
  createdBy: string;
}

export interface NewWebhookEvent {
  /** `evt_...`, also sent as Dropkey-Event-Id. */
  id: string;
  type: string;
  connection: string | null;
  at: number;
  /** The exact JSON body every endpoint receives for this event. */
  body: string;
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed';

export interface DeliveryAttempt {
  attempt: number;
  at: number;
  /** HTTP status of the receiver's answer, or null when none came (timeout, refused, redirect blocked...). */
  statusCode: number | null;
  /** Plain words for a failed attempt; null when it succeeded. */
  error: string | null;
  durationMs: number;
}

export interface DeliveryRecord {
  id: string;
  eventId: string;
  eventType: string;
  connection: string | null;
  endpointId: string;
  endpointUrl: string;
  status: DeliveryStatus;
  attempts: number;
  /** When the next attempt is due (pending only). */
  nextAttemptAt: number | null;
  lastAttemptAt: number | null;
  lastStatusCode: number | null;
  lastError: string | null;
  lastDurationMs: number | null;
  createdAt: number;
  completedAt: number | null;
}

/** A delivery claimed for one attempt, with everything needed to send it. */
export interface ClaimedDelivery {
  delivery: DeliveryRecord;
  body: string;
  secret: string;
}

export interface AttemptOutcome extends DeliveryAttempt {
  /** succeeded: done; retry: pending again at nextAttemptAt; failed: no more attempts. */
  result: 'succeeded' | 'retry' | 'failed';
  nextAttemptAt: number | null;
}

export interface JobRunRecord {
  name: string;
  lastStartedAt: number | null;
  lastFinishedAt: number | null;
  /** 'ok' | 'failed' | 'running' (a run that never finished shows 'running' until the next one). */
  lastOutcome: string | null;
  lastError: string | null;
  runs: number;
}

export interface WebhookStore {
  // ---- endpoints
  createEndpoint(e: NewWebhookEndpoint, now: number): Promise<WebhookEndpoint>;
  listEndpoints(): Promise<WebhookEndpoint[]>;
  getEndpoint(id: string): Promise<WebhookEndpoint | undefined>;
  /** Deletes the endpoint and its deliveries still pending; false if there was none. */
  deleteEndpoint(id: string): Promise<boolean>;

  // ---- outbox and delivery log
  /**
   * Writes the event and one pending delivery (due now) per enabled endpoint subscribed to its type, or only for
   * `onlyEndpoint` (test sends). Returns the delivery ids.
   */
  enqueueEvent(event: NewWebhookEvent, now: number, onlyEndpoint?: string): Promise<string[]>;
  /**
   * Atomically claims up to `limit` pending deliveries due at `now` whose claim is free or expired, for `leaseMs`.
   * With `ids`, only those. A claimed delivery is invisible to other workers until the lease runs out.
   */
  claimDue(now: number, leaseMs: number, limit: number, ids?: string[]): Promise<ClaimedDelivery[]>;
  /** Records one attempt of a claimed delivery and releases the claim. */
  recordAttempt(deliveryId: string, outcome: AttemptOutcome): Promise<void>;
  /** Newest first. */
  listDeliveries(query?: { endpointId?: string; status?: DeliveryStatus; limit?: number }): Promise<DeliveryRecord[]>;
  getDelivery(id: string): Promise<(DeliveryRecord & { attemptLog: DeliveryAttempt[] }) | undefined>;
  /** Makes a finished delivery pending again, due now (a manual redelivery); false if unknown. */
  redeliver(id: string, now: number): Promise<boolean>;
  /** The earliest nextAttemptAt among pending deliveries (claimed or not), or null: when a worker should wake. */
  nextDueAt(): Promise<number | null>;
  /** Deletes finished deliveries and orphaned events older than `before`. */
  purgeFinished(before: number): Promise<number>;

  // ---- scheduled jobs
  /**
   * Records the start of a run of `name` unless one started less than `minIntervalMs` from `now`, before or after
   * (another instance, whose clock may be a little ahead, did the work this period). Call it while holding the
   * job's store lock. True: go ahead. minIntervalMs 0 always goes ahead.
   */
  beginJobRun(name: string, now: number, minIntervalMs: number): Promise<boolean>;
  finishJobRun(name: string, now: number, outcome: 'ok' | 'failed', error: string | null): Promise<void>;
  listJobRuns(): Promise<JobRunRecord[]>;

  // ---- operations
  /** Re-encrypts signing secrets not under the keyring's active key (docs/decisions/0003-key-rotation.md, like KeyRotation). */
  reencryptSecrets(): Promise<{ rewritten: number; remaining: number }>;
}
