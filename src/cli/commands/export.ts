/**
 * `dropkey export`: hands a connection's credentials to another tool (dotenv, JSON, rclone, Airflow). The one
 * command that prints secrets on purpose, so it warns on stderr when stdout is a terminal.
 * The access token is refreshed first, so what is exported is valid for as long as possible.
 */
import type { Command, CommandOptions } from '../context.js';
import { intOption, parseOptions, usageError } from '../config.js';
import { withSession } from '../session.js';
import {
  EXPORT_FORMATS,
  formatAirflowJson,
  formatAirflowUri,
  formatEnv,
  formatJson,
  formatRclone,
  type ExportFormat,
  type ExportInput,
} from '../export-formats.js';
import { validateName } from '../../connections/names.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';

const usage = `Usage: dropkey export --format env|json|rclone|airflow|airflow-json [--connection NAME] [--name ID] [--min-valid SECONDS]

Prints the connection's credentials for another tool. THE OUTPUT CONTAINS SECRETS (access token, refresh
token, app secret): write it to a file only you can read, or into the tool's secret store.

Formats:
  env           dotenv lines: DROPBOX_ACCESS_TOKEN, DROPBOX_ACCESS_TOKEN_EXPIRES_AT, DROPBOX_REFRESH_TOKEN,
                DROPBOX_APP_KEY, DROPBOX_APP_SECRET.
  json          One JSON object with the same facts.
  rclone        An rclone.conf remote section (type = dropbox, token JSON with the refresh token):
                  dropkey export --format rclone >> "$(rclone config file | tail -1)"
  airflow       An Airflow connection URI (conn_type dropbox, password = access token, extras
                refresh_token, app_key, app_secret):
                  export AIRFLOW_CONN_DROPBOX_DEFAULT="$(dropkey export --format airflow)"
  airflow-json  The same connection as JSON for: airflow connections import FILE

Options:
  --connection NAME    Connection (default: $DROPKEY_CONNECTION or "default").
  --name ID            rclone remote name / Airflow connection id (default: "dropbox" for rclone,
                       "dropbox_default" for Airflow, or the connection name when it is not "default").
  --min-valid SECONDS  Refresh first unless the token stays valid this long (default 300).
`;

const options = {
  format: { type: 'string', short: 'f' },
  connection: { type: 'string' },
  name: { type: 'string' },
  'min-valid': { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Print credentials for another tool (env, json, rclone, airflow); prints secrets',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('export', ctx.argv, options);
    let format = values.format as ExportFormat | undefined;
    if (values.json) {
      if (format === undefined || format === 'json') format = 'json';
      else if (format === 'airflow' || format === 'airflow-json') format = 'airflow-json';
      else throw usageError('export', `--json cannot be combined with --format ${format}`);
    }
    if (format === undefined) throw usageError('export', `missing --format (one of ${EXPORT_FORMATS.join(', ')})`);
    if (!EXPORT_FORMATS.includes(format)) throw usageError('export', `unknown format "${format}" (use one of ${EXPORT_FORMATS.join(', ')})`);
    const minValidSeconds = intOption('export', 'min-valid', values['min-valid'], { max: 4 * 3600 });

    const { input, apiBase } = await withSession(ctx, async ({ dk, cfg, record }) => {
      const name = validateName('connection', values.connection ?? cfg.connection);
      const token = await dk.getToken(name, { ...(minValidSeconds === undefined ? {} : { minValidSeconds }), signal: ctx.signal });
      // The facade hands out access tokens only; the refresh token and app secret are read from the store here,
      // for this one command whose job is to print them.
      const rec = await dk.store.getConnection(name);
      const app = rec ? await dk.store.getApp(rec.app) : undefined;
      if (!rec || !app) {
        throw new DropkeyError(ErrorCodes.NOT_FOUND, `connection "${name}" disappeared while exporting (revoked meanwhile?).`, { hint: 'Run dropkey list.' });
      }
      const i: ExportInput = {
        connection: name,
        appKey: app.key,
        appSecret: app.secret,
        accessToken: token.accessToken,
        expiresAt: token.expiresAt,
        refreshToken: rec.refreshToken,
        scopes: token.scopes,
        accountId: token.accountId,
        teamId: token.teamId,
        email: rec.email,
      };
      // It prints secrets: who exported which connection, and in which format, is audited (never what was printed).
      await record({ action: 'connection.exported', target: name, details: { format, refresh_token: rec.refreshToken !== null, app_secret: app.secret !== null } });
      return { input: i, apiBase: dk.urls.api };
    });

    if (ctx.stdout.isTTY) {
      ctx.stderr.write('Warning: this output contains secrets (tokens, app secret). Redirect it to a private file or a secret store, and keep it out of shell history, chat and version control.\n');
    }
    if (input.refreshToken === null) {
      ctx.stderr.write(`Warning: "${input.connection}" has no refresh token: the exported access token stops working when it expires. Run dropkey login --connection ${input.connection} --app ... to fix that.\n`);
    } else if (input.appSecret === null && (format === 'rclone' || format === 'airflow' || format === 'airflow-json')) {
      ctx.stderr.write('Note: this app has no secret in dropkey (PKCE only); the receiving tool must refresh with the app key alone.\n');
    }
    const defaultId = (fallback: string): string => values.name ?? (input.connection === 'default' ? fallback : input.connection);
    let out: string;
    switch (format) {
      case 'env':
        out = formatEnv(input);
        break;
      case 'json':
        out = formatJson(input, Date.now());
        break;
      case 'rclone':
        out = formatRclone(input, sectionName(defaultId('dropbox')));
        break;
      case 'airflow':
        out = `${formatAirflowUri(input, apiBase)}\n`;
        break;
      case 'airflow-json':
        out = formatAirflowJson(input, defaultId('dropbox_default'), apiBase);
        break;
    }
    ctx.stdout.write(out);
  },
};
export default command;

function sectionName(name: string): string {
  if (!/^[A-Za-z0-9_.+@ -]{1,64}$/.test(name) || name.startsWith(' ') || name.startsWith('-')) {
    throw usageError('export', `"${name.slice(0, 80)}" is not a valid rclone remote name (letters, digits, _ . + @ - and spaces)`);
  }
  return name;
}
