/**
 * `dropkey token`: prints a valid access token and nothing else, so `curl -H "Authorization: Bearer $(dropkey token)"`
 * always works. This is the CLI's hot path (bench/token-startup.mjs): import only what it needs.
 */
import type { Command } from '../context.js';
import { intOption, parseOptions } from '../config.js';
import { withSession } from '../session.js';
import { validateName } from '../../connections/names.js';

const usage = `Usage: dropkey token [--connection NAME] [--min-valid SECONDS] [--json]

Prints a valid access token followed by a newline, refreshing it first when needed:
  curl -H "Authorization: Bearer $(dropkey token)" ...

Options:
  --connection NAME    Connection (default: $DROPKEY_CONNECTION or "default").
  --min-valid SECONDS  The token must stay valid at least this long (default 300).
  --json               Print {access_token, expires_at, expires_in, scopes, account_id, team_id, email, connection}.
`;

const command: Command = {
  summary: 'Print a valid access token (refreshing it when needed)',
  usage,
  async run(ctx) {
    const { values } = parseOptions('token', ctx.argv, {
      connection: { type: 'string' },
      'min-valid': { type: 'string' },
      json: { type: 'boolean' },
    });
    const minValidSeconds = intOption('token', 'min-valid', values['min-valid'], { max: 4 * 3600 });
    await withSession(ctx, async ({ dk, cfg }) => {
      const name = validateName('connection', values.connection ?? cfg.connection);
      const t = await dk.getToken(name, { ...(minValidSeconds === undefined ? {} : { minValidSeconds }), signal: ctx.signal });
      if (!values.json) {
        ctx.stdout.write(`${t.accessToken}\n`);
        return;
      }
      const info = await dk.get(name);
      const now = Date.now();
      ctx.stdout.write(`${JSON.stringify({
        access_token: t.accessToken,
        token_type: 'bearer',
        expires_at: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString(),
        expires_in: t.expiresAt === null ? null : Math.max(0, Math.floor((t.expiresAt - now) / 1000)),
        scopes: t.scopes,
        account_id: t.accountId,
        team_id: t.teamId,
        email: info.email,
        connection: t.connection,
      }, null, 2)}\n`);
    });
  },
};
export default command;
