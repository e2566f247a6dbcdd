/**
 * What both WebhookStore drivers (./sqlite/webhook-store.ts, ./postgres/webhook-store.ts) share: row shapes, row →
 * record mapping, the signing secret's encryption context and the delivery listing's columns, so the drivers answer
 * alike. Only column encodings differ (SQLite keeps lists as JSON text and booleans as 0/1, PostgreSQL as text[] and
 * boolean): the mapping takes them decoded.
 */
import { randomUUID } from 'node:crypto';
import { secretContext } from './cipher.js';
import type { AttemptOutcome, DeliveryRecord, DeliveryStatus, JobRunRecord, WebhookEndpoint } from './webhook-types.js';

export interface EndpointRowOf<Events, Enabled> {
  id: string;
  url: string;
  description: string;
  events: Events;
  secret_enc: string;
  enabled: Enabled;
  created_at: number;
  created_by: string;
  updated_at: number;
}

/** A delivery joined with its event (type, connection) and endpoint (url): see deliveryColumns. */
export interface DeliveryRow {
  id: string;
  event_id: string;
  event_type: string;
  connection: string | null;
  endpoint_id: string;
  endpoint_url: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number | null;
  last_attempt_at: number | null;
  last_status_code: number | null;
  last_error: string | null;
  last_duration_ms: number | null;
  created_at: number;
  completed_at: number | null;
}

export interface AttemptRow {
  attempt: number;
  at: number;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

export interface JobRunRow {
  name: string;
  last_started_at: number | null;
  last_finished_at: number | null;
  last_outcome: string | null;
  last_error: string | null;
  runs: number;
}

/** AAD of an endpoint's encrypted signing secret: the ciphertext only opens in its own row. */
export const endpointSecretContext = (id: string): string => secretContext('webhook_endpoints', id, 'secret');

/** The SELECT that yields DeliveryRow, given the three (driver-qualified) table names. */
export function deliverySelect(t: { deliveries: string; events: string; endpoints: string }): string {
  return `
  SELECT d.id, d.event_id, e.type AS event_type, e.connection, d.endpoint_id, w.url AS endpoint_url, d.status,
         d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status_code, d.last_error, d.last_duration_ms,
         d.created_at, d.completed_at
  FROM ${t.deliveries} d
  JOIN ${t.events} e ON e.id = d.event_id
  JOIN ${t.endpoints} w ON w.id = d.endpoint_id`;
}

export function toEndpoint(r: EndpointRowOf<unknown, unknown>, events: string[], enabled: boolean): WebhookEndpoint {
  return {
    id: r.id,
    url: r.url,
    description: r.description,
    events,
    enabled,
    createdAt: r.created_at,
    createdBy: r.created_by,
    updatedAt: r.updated_at,
  };
}

export function toDelivery(r: DeliveryRow): DeliveryRecord {
  return {
    id: r.id,
    eventId: r.event_id,
    eventType: r.event_type,
    connection: r.connection,
    endpointId: r.endpoint_id,
    endpointUrl: r.endpoint_url,
    status: r.status,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    lastAttemptAt: r.last_attempt_at,
    lastStatusCode: r.last_status_code,
    lastError: r.last_error,
    lastDurationMs: r.last_duration_ms,
    createdAt: r.created_at,
    completedAt: r.completed_at,
  };
}

export function toAttempt(a: AttemptRow): { attempt: number; at: number; statusCode: number | null; error: string | null; durationMs: number } {
  return { attempt: a.attempt, at: a.at, statusCode: a.status_code, error: a.error, durationMs: a.duration_ms };
}

export function toJobRun(r: JobRunRow): JobRunRecord {
  return {
    name: r.name,
    lastStartedAt: r.last_started_at,
    lastFinishedAt: r.last_finished_at,
    lastOutcome: r.last_outcome,
    lastError: r.last_error,
    runs: r.runs,
  };
}

/**
 * A delivery's columns after an attempt, in the order of ATTEMPT_COLUMNS: pending again (retry) or finished, the
 * attempt count never going back (attempts may be recorded out of order), the claim released by the caller's SQL.
 */
export const ATTEMPT_COLUMNS = ['status', 'attempts', 'next_attempt_at', 'last_attempt_at', 'last_status_code', 'last_error', 'last_duration_ms', 'completed_at'] as const;

export function afterAttempt(o: AttemptOutcome, attemptsSoFar: number): unknown[] {
  const status: DeliveryStatus = o.result === 'retry' ? 'pending' : o.result;
  return [
    status,
    Math.max(attemptsSoFar, o.attempt),
    o.result === 'retry' ? o.nextAttemptAt : null,
    o.at,
    o.statusCode,
    o.error,
    o.durationMs,
    o.result === 'retry' ? null : o.at + o.durationMs,
  ];
}

/** Ids for endpoints (`whe_…`) and deliveries (`whd_…`). */
export type NewId = (prefix: string) => string;

/** The default NewId: `<prefix>_` and 32 random hex digits. */
export function randomId(prefix: string): string {
  return `${prefix}_${randomUUID().replace(/-/g, '')}`;
}
