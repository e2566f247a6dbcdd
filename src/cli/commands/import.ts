/**
 * `dropkey import`: adopts credentials obtained elsewhere. A refresh token is the durable form; a pasted access
 * token (App Console "Generate" button) expires within 4 hours and cannot be refreshed (https://developers.dropbox.com/oauth-guide), so
 * it is accepted with a warning and the exact login command that replaces it.
 * `--from rclone|airflow|dotenv|dbxcli` reads the token from where another tool keeps it (see ../import-from.ts).
 */
import type { Command, CommandContext, CommandOptions } from '../context.js';
import { parseOptions, usageError } from '../config.js';
import { readSecret } from '../input.js';
import { fixCommand } from '../fix.js';
import { shellQuote, writeJson } from '../output.js';
import { withSession } from '../session.js';
import { connectionJson, describeConnection } from '../view.js';
import { IMPORT_SOURCES, importFrom, type ImportSource } from '../import-from.js';
import { validateName } from '../../connections/names.js';
import type { ConnectionInfo } from '../../connections/types.js';
import type { Fix } from '../../errors.js';
import type { DbxcliTokenType } from '../../formats/sources.js';

const usage = `Usage: dropkey import --app NAME [--connection NAME] (--refresh-token TOKEN|- | --access-token TOKEN|-) [--json]
       dropkey import --from rclone|airflow|dotenv|dbxcli [SOURCE OPTIONS] [--connection NAME] [--app NAME] [--json]

Stores a connection from a token you already have; it is checked with Dropbox at once.

Options:
  --app NAME              The app the token belongs to (dropkey app add first).
  --connection NAME       Connection name (default: $DROPKEY_CONNECTION or "default").
  --refresh-token TOKEN   A refresh token (never expires). "-" reads it from standard input.
  --access-token TOKEN    An access token, e.g. generated in the App Console. "-" reads it from standard input.
                          It expires within 4 hours and cannot be refreshed: prefer dropkey login.
  --json                  Print the connection as JSON.

Importing from another tool (the source is only read, never changed):
  --from rclone           A Dropbox remote of rclone.conf (--file, default: rclone's own config file;
                          --name REMOTE when it holds several).
  --from airflow          An Airflow connection: --file CONNECTIONS_FILE (.json, .yaml or .env, as the
                          LocalFilesystemBackend reads it; --form json|yaml|env for another extension),
                          --uri URI|-, or --env-var AIRFLOW_CONN_X (default: AIRFLOW_CONN_DROPBOX_DEFAULT);
                          --name CONN_ID (default dropbox_default).
  --from dotenv           DROPBOX_REFRESH_TOKEN / DROPBOX_ACCESS_TOKEN / DROPBOX_APP_KEY / DROPBOX_APP_SECRET
                          of a dotenv file (--file, default ./.env; --prefix P for P_DROPBOX_...).
  --from dbxcli           dbxcli's ~/.config/dbxcli/auth.json (--file; --token-type personal|teamAccess|
                          teamManage). dbxcli keeps access tokens only: they expire and cannot be refreshed.
  --app-key KEY           The app key that issued the token, when the source does not say.
  --pkce                  The app has no secret: do not ask for one.
  The app is matched by key among the apps dropkey knows, or registered; its secret is read from the source, or
  asked for on standard input when a refresh token needs it. An account already connected is reported, not copied.
`;

const SOURCE_FLAGS = ['file', 'name', 'uri', 'env-var', 'form', 'prefix', 'token-type', 'app-key', 'pkce'] as const;

const options = {
  app: { type: 'string' },
  connection: { type: 'string' },
  'refresh-token': { type: 'string' },
  'access-token': { type: 'string' },
  json: { type: 'boolean' },
  from: { type: 'string' },
  file: { type: 'string' },
  name: { type: 'string' },
  uri: { type: 'string' },
  'env-var': { type: 'string' },
  form: { type: 'string' },
  prefix: { type: 'string' },
  'token-type': { type: 'string' },
  'app-key': { type: 'string' },
  pkce: { type: 'boolean' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Store a connection from an existing token, or from rclone, Airflow, a dotenv file or dbxcli',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('import', ctx.argv, options);
    if (values.from !== undefined) return runFrom(ctx, values);
    const stray = SOURCE_FLAGS.find((f) => values[f] !== undefined);
    if (stray) throw usageError('import', `--${stray} goes with --from rclone|airflow|dotenv|dbxcli`);
    if (values.app === undefined) throw usageError('import', 'missing --app NAME (the app the token belongs to; see dropkey app list), or --from TOOL');
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
    warnUnrefreshable(ctx, info, result.refreshable, result.warnings, result.fix);
    if (values.json) {
      writeJson(ctx, { ...connectionJson(info, now), created: result.created, warnings: result.warnings, ...(result.fix ? { fix: fixCommand(result.fix) } : {}) });
    }
    else ctx.stdout.write(`Imported "${info.name}": ${describeConnection(info, now)}\n`);
  },
};
export default command;

function warnUnrefreshable(ctx: CommandContext, info: ConnectionInfo, refreshable: boolean, warnings: string[], fix?: Fix): void {
  // The facade gives the login that upgrades a pasted access token as a fix: printed as the command to run.
  if (fix) ctx.stderr.write(`  Run: ${fixCommand(fix)}\n`);
  if (!refreshable && !fix && !warnings.some((w) => w.includes('dropkey login'))) {
    ctx.stderr.write(`Warning: "${info.name}" cannot be refreshed. Upgrade it with: dropkey login --connection ${shellQuote(info.name)} --app ${shellQuote(info.app)}\n`);
  }
}

async function runFrom(ctx: CommandContext, values: Record<string, string | boolean | undefined>): Promise<void> {
  const str = (k: string): string | undefined => values[k] as string | undefined;
  const from = str('from') as ImportSource;
  if (!IMPORT_SOURCES.includes(from)) throw usageError('import', `unknown source "${from}" for --from (use one of ${IMPORT_SOURCES.join(', ')})`);
  if (values['refresh-token'] !== undefined || values['access-token'] !== undefined) {
    throw usageError('import', '--from reads the token from the source; leave out --refresh-token/--access-token');
  }
  const only = (flag: string, sources: ImportSource[]): void => {
    if (values[flag] !== undefined && !sources.includes(from)) throw usageError('import', `--${flag} does not go with --from ${from}`);
  };
  only('uri', ['airflow']);
  only('env-var', ['airflow']);
  only('form', ['airflow']);
  only('name', ['airflow', 'rclone']);
  only('prefix', ['dotenv']);
  only('token-type', ['dbxcli']);
  const form = str('form');
  if (form !== undefined && !['json', 'yaml', 'env'].includes(form)) throw usageError('import', `--form must be json, yaml or env, got "${form}"`);
  const tokenType = str('token-type');
  if (tokenType !== undefined && !['personal', 'teamAccess', 'teamManage'].includes(tokenType)) {
    throw usageError('import', `--token-type must be personal, teamAccess or teamManage, got "${tokenType}"`);
  }
  const defined = <T>(o: Record<string, T | undefined>): Record<string, T> => Object.fromEntries(Object.entries(o).filter((e) => e[1] !== undefined)) as Record<string, T>;
  const result = await withSession(ctx, ({ dk, cfg }) =>
    importFrom(ctx, dk, {
      from,
      defaultConnection: cfg.connection,
      ...defined({
        file: str('file'),
        name: str('name'),
        uri: str('uri'),
        envVar: str('env-var'),
        prefix: str('prefix'),
        connection: str('connection') === undefined ? undefined : validateName('connection', str('connection')),
        app: str('app'),
        appKey: str('app-key'),
      }),
      ...(form === undefined ? {} : { form: form as 'json' | 'yaml' | 'env' }),
      ...(tokenType === undefined ? {} : { tokenType: tokenType as DbxcliTokenType }),
      ...(values['pkce'] === true ? { pkce: true } : {}),
    }),
  );
  const now = Date.now();
  const info = result.connection;
  for (const n of result.notes) ctx.stderr.write(`${n}\n`);
  for (const w of result.warnings) ctx.stderr.write(`Warning: ${w}\n`);
  if (result.imported) warnUnrefreshable(ctx, info, info.refreshable, result.warnings);
  if (values['json']) {
    writeJson(ctx, {
      ...connectionJson(info, now),
      source: result.found.source,
      imported_as: result.found.kind,
      imported: result.imported,
      created: result.created,
      app_created: result.app.created,
      warnings: result.warnings,
    });
  } else if (result.imported) {
    ctx.stdout.write(`Imported "${info.name}" from ${result.found.source}: ${describeConnection(info, now)}\n`);
  } else {
    ctx.stdout.write(`Already connected as "${info.name}": ${describeConnection(info, now)}\n`);
  }
}
