/** What the emulator's handlers share: state, clock, settings. Built by createEmulator (index.ts). */
import type { State } from './state.js';

export interface CodeRecord {
  app_key: string;
  account_id: string;
  scopes: string[];
  redirect_uri: string | undefined;
  code_challenge: string | undefined;
  token_access_type: 'online' | 'offline' | 'legacy';
  expires_at: number;
  /** Set once exchanged; a second exchange fails and revokes this grant (RFC 6749 §4.1.2). */
  used_by_grant?: string;
}

export interface Core {
  state: State;
  /** The emulator clock: the injected clock plus POST /_emulator/clock advances. Epoch ms. */
  now(): number;
  tokenLifetimeSeconds: number;
  autoApprove: boolean;
  /** Persists the state (no-op without a data directory). */
  save(): void;
  /** Varies the dots of error_summary (https://www.dropbox.com/developers/documentation/http/documentation#error-handling). */
  salt(): number;
  /** Authorization codes by hash (memory only). */
  codes: Map<string, CodeRecord>;
  /** Bytes used in a namespace (from the files module). */
  usedBytes(namespaceId: string): number;
}

/** Authorization codes live 10 minutes of emulator time; Dropbox's exact value is unknown (https://developers.dropbox.com/oauth-guide). */
export const CODE_LIFETIME_MS = 10 * 60 * 1000;
/** A consent page must be answered within 30 minutes of emulator time. */
export const CONSENT_LIFETIME_MS = 30 * 60 * 1000;
