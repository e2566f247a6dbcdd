/**
 * `dropkey import`: adopts credentials obtained elsewhere. A refresh token is the durable form; a pasted access
 * token (App Console "Generate" button) expires within 4 hours and cannot be refreshed (https://developers.dropbox.com/oauth-guide), so
 * it is accepted with a warning and the exact login command that replaces it.
 */
import type { Command, CommandOptions } from '../context.js';
import { parseOptions, usageError } from '../config.js';
import { readSecret } from '../input.js';
import { fixCommand } from '../fix.js';
import { shellQuote, writeJson } from '../output.js';
import { withSession } from '../session.js';
import { connectionJson, describeConnection } from '../view.js';
import { validateName } from '../../connections/names.js';

const usage = `Usage: dropkey import --app NAME [--connection NAME] (--refresh-token TOKEN|- | --access-token TOKEN|-) [--json]

Stores a connection from a token you already have; it is checked with Dropbox at once.

Options:
  --app NAME              The app the token belongs to (dropkey app add first).
  --connection NAME       Connection name (default: $DROPKEY_CONNECTION or "default").
  --refresh-token TOKEN   A refresh token (never expires). "-" reads it from standard input.
  --access-token TOKEN    An access token, e.g. generated in the App Console. "-" reads it from standard input.
                          It expires within 4 hours and cannot be refreshed: prefer dropkey login.
  --json                  Print the connection as JSON.
`;

const options = {
  app: { type: 'string' },
  connection: { type: 'string' },
  'refresh-token': { type: 'string' },
  'access-token': { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Store a connection from an existing refresh token (or a short-lived access token)',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('import', ctx.argv, options);
    if (values.app === undefined) throw usageError('import', 'missing --app NAME (the app the token belongs to; see dropkey app list)');
    const app = validateName('app', values.app);
    const hasRefresh = values['refresh-token'] !== undefined;
    const hasAccess = values['access-token'] !== undefined;
    if (hasRefresh === hasAccess) throw usageError('import', 'give exactly one of --refresh-token TOKEN|- or --access-token TOKEN|-');
    const raw = hasRefresh ? values['refresh-token']! : values['access-token']!;
    const kind = hasRefresh ? 'refresh token' : 'access token';
    const token = raw === '-' ? await readSecret(ctx, kind) : raw;

    const result = await withSession(ctx, async ({ dk, cfg }) => {
      const connection = validateName('connection', values.connection ?? cfg.connection);
      return dk.import({
        connection,
        app,
        ...(hasRefresh ? { refreshToken: token } : { accessToken: token }),
        signal: ctx.signal,
      });
    });
    const now = Date.now();
    const info = result.connection;
    // For a pasted access token the facade warns that it expires within 4 hours and cannot be refreshed, and gives
    // the login that upgrades it as a fix: printed as the command to run.
    for (const w of result.warnings) ctx.stderr.write(`Warning: ${w}\n`);
    if (result.fix) ctx.stderr.write(`  Run: ${fixCommand(result.fix)}\n`);
    if (!result.refreshable && !result.fix) {
      ctx.stderr.write(`Warning: "${info.name}" cannot be refreshed. Upgrade it with: dropkey login --connection ${shellQuote(info.name)} --app ${shellQuote(info.app)}\n`);
    }
    if (values.json) {
      writeJson(ctx, { ...connectionJson(info, now), created: result.created, warnings: result.warnings, ...(result.fix ? { fix: fixCommand(result.fix) } : {}) });
    }
    else ctx.stdout.write(`Imported "${info.name}": ${describeConnection(info, now)}\n`);
  },
};
export default command;
