/**
 * dropkey's public library API (`import { Dropkey } from 'dropkey'`). Kept small on purpose (everything
 * else is private; package.json "exports" lists the entry points): the facade, its types, the error classes and codes, and the Dropbox base-URL helpers.
 *
 *   const dk = await Dropkey.open({ home: '/var/lib/myjob/dropkey' });   // or Dropkey.fromEnv(env): the CLI's variables (README)
 *   const token = await dk.getAccessToken('default');                    // always valid, refreshed as needed
 *   const me = await dk.client('default').rpc('users/get_current_account');
 *   const dbx = new Dropbox({ auth: await dk.sdkAuth('default') });      // official SDK, never a stale token
 */
export { Dropkey } from './connections/dropkey.js';
export type {
  AddAppInput,
  CheckAccessOptions,
  ClientOptions,
  ConnectResult,
  FinishLoginInput,
  ImportInput,
  ImportResult,
  RevokeResult,
  StartLoginInput,
} from './connections/dropkey.js';
export type {
  AppInfo,
  ConnectionInfo,
  DropkeyOptions,
  GetTokenOptions,
  PendingLogin,
  RetryOptions,
  Sleep,
  TokenInfo,
} from './connections/types.js';
export type { DoctorInput, DoctorReport, Finding, Severity } from './connections/doctor.js';
export type { DropkeySdkAuth, SdkAuthOptions } from './connections/sdk-auth.js';
export type { Logger } from './connections/redact.js';
export type { DropboxClient, CallOptions, DownloadResult, PathRoot, UploadBody } from './dropbox/client.js';
export type { ConnectionState, AppAccess, Store } from './store/types.js';
export { DropkeyError, DropboxApiError, ErrorCodes, isDropkeyError } from './errors.js';
export type { ErrorCode, DropkeyErrorOptions, Fix, FixAction } from './errors.js';
export { DROPBOX_URLS, dropboxUrlsFromBase, dropboxUrlsFromEnv } from './dropbox/hosts.js';
export type { DropboxUrls } from './dropbox/hosts.js';
// Receivers of dropkey's webhooks verify deliveries with these (docs/webhooks.md); node:crypto only.
export { signWebhook, verifyWebhookSignature, webhookSignatureProblem } from './server/webhooks/signing.js';
