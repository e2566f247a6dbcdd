/**
 * `dropkey token`: prints a valid access token and nothing else, so `curl -H "Authorization: Bearer $(dropkey token)"`
 * always works. This is the CLI's hot path (bench/token-startup.mjs): when the stored token is fresh, only the
 * store is loaded; the facade (OAuth, HTTP, retries) is imported only when a refresh is needed.
 */
import { writeLine, type Command, type CommandOptions } from '../context.js';
import { intOption, loadConfig, parseOptions } from '../config.js';
import { facadeOn, openStoreOnly } from '../session.js';
import { progressStream } from '../progress.js';
import { validateName } from '../../connections/names.js';
import type { ConnectionRecord } from '../../store/types.js';
import type { TokenInfo } from '../../connections/types.js';
import { tokenJson } from '../../connections/json.js';

const usage = `Usage: dropkey token [--connection NAME] [--min-valid SECONDS] [--json]

Prints a valid access token followed by a newline, refreshing it first when needed:
  curl -H "Authorization: Bearer $(dropkey token)" ...

Options:
  --connection NAME    Connection (default: $DROPKEY_CONNECTION or "default").
  --min-valid SECONDS  The token must stay valid at least this long (default 300).
  --json               Print the token as the API answers it: {access_token, token_type, expires_at,
                       expires_in, scope, scopes, account_id, team_id, email, connection}.
`;

/**
 * The facade's own refresh margin (DropkeyOptions.refreshMarginSeconds default, the SDKs' 300 s,
 * https://developers.dropbox.com/oauth-guide). The fast path below must never hand out a token the facade would have refreshed.
 */
const MARGIN_SECONDS = 300;

/** A token the facade would return as is: active, with a known expiry far enough away. */
function freshRecord(rec: ConnectionRecord | undefined, now: number, minValidSeconds: number | undefined): rec is ConnectionRecord & { accessToken: string } {
  if (!rec || rec.state !== 'active' || !rec.accessToken || rec.accessTokenExpiresAt === null) return false;
  return rec.accessTokenExpiresAt - now >= Math.max(MARGIN_SECONDS, minValidSeconds ?? 0) * 1000;
}

const options = {
  connection: { type: 'string' },
  'min-valid': { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Print a valid access token (refreshing it when needed)',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('token', ctx.argv, options);
    const minValidSeconds = intOption('token', 'min-valid', values['min-valid'], { max: 4 * 3600 });
    const cfg = await loadConfig(ctx.env, ctx.cwd);
    const name = validateName('connection', values.connection ?? cfg.connection);
    const store = await openStoreOnly(cfg);
    try {
      const rec = await store.getConnection(name);
      let t: TokenInfo;
      if (freshRecord(rec, Date.now(), minValidSeconds)) {
        t = { accessToken: rec.accessToken, expiresAt: rec.accessTokenExpiresAt, scopes: rec.scopes, accountId: rec.accountId, teamId: rec.teamId, connection: rec.name, email: rec.email };
      } else {
        // Refresh (or explain why not) through the facade: single-flight, cross-process lock, retries.
        const dk = await facadeOn(store, cfg, progressStream(ctx));
        try {
          t = await dk.getToken(name, { ...(minValidSeconds === undefined ? {} : { minValidSeconds }), signal: ctx.signal });
        } finally {
          await dk.close();
        }
      }
      if (!values.json) {
        writeLine(ctx, `${t.accessToken}\n`);
        return;
      }
      // The API's token shape (connections/json.ts).
      ctx.stdout.write(`${JSON.stringify(tokenJson(t, Date.now()), null, 2)}\n`);
    } finally {
      await store.close();
    }
  },
};
export default command;
