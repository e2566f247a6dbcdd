import type { Command, CommandContext, CommandOptions } from '../context.js';
import { DEFAULT_LOGIN_PORT, intOption, parseOptions, redirectUriFor, scopeList, unknownSubcommand, usageError } from '../config.js';
import { readSecret } from '../input.js';
import { table, writeJson } from '../output.js';
import { withSession } from '../session.js';
import { validateName } from '../../connections/names.js';
import type { AppInfo } from '../../connections/types.js';
import { DropkeyError } from '../../errors.js';

const usage = `Usage:
  dropkey app add --name NAME --key KEY [--secret SECRET|-] [--scope S...] [--team] [--app-folder] [--port N]
                  [--no-check] [--json]
  dropkey app update --name NAME [--key KEY] [--secret SECRET|-] [--no-secret] [--scope S...] [--team|--no-team]
                     [--app-folder|--full-access] [--no-check] [--json]
  dropkey app check NAME           (or --name NAME)
  dropkey app list [--json]
  dropkey app remove NAME          (or --name NAME)

Registers a Dropbox app (its key from the App Console, https://www.dropbox.com/developers/apps) so that
dropkey login can connect accounts with it.

Options for add:
  --name NAME      A local name for the app, e.g. backup.
  --key KEY        The app key (Settings tab of the App Console).
  --secret SECRET  The app secret. Use "-" to read it from standard input (keeps it out of shell history).
                   Optional: without it, dropkey uses PKCE only.
  --scope S        A scope login asks for (repeat, or space-separated). Default: every scope of the app.
  --team           A Dropbox Business team app (team tokens, validated with team/get_info).
  --app-folder     The app has "App folder" access (default: full Dropbox).
  --port N         The port of the redirect URI to print (default ${DEFAULT_LOGIN_PORT}; must match dropkey login --port).
  --no-check       Store the key and secret without asking Dropbox whether they belong together.
  --json           Print the app and the redirect URI as JSON.

add and update ask Dropbox (its app-authenticated check/app route) whether a new key and secret belong together
before storing them: a wrong pair, or a Dropbox that cannot be reached, stores nothing and says why. --no-check
skips the question (e.g. offline, or a server that does not have check/app). An app without a secret (PKCE
only) cannot be checked this way; a wrong key then shows at login.

update changes a registered app in place (connections keep working with it), e.g. after a wrong secret
(invalid_client): dropkey app update --name backup --secret -
  --no-secret      Forget the secret (PKCE only). --scope replaces the scope list.

check asks Dropbox whether the stored key and secret of an app belong together. Exit status 0 when they do
(or the app has no secret to check), 1 when Dropbox refuses them.
`;

const subcommands = {
  add: {
    name: { type: 'string' },
    key: { type: 'string' },
    secret: { type: 'string' },
    scope: { type: 'string', multiple: true },
    team: { type: 'boolean' },
    'app-folder': { type: 'boolean' },
    port: { type: 'string' },
    'no-check': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  update: {
    name: { type: 'string' },
    key: { type: 'string' },
    secret: { type: 'string' },
    'no-secret': { type: 'boolean' },
    scope: { type: 'string', multiple: true },
    team: { type: 'boolean' },
    'no-team': { type: 'boolean' },
    'app-folder': { type: 'boolean' },
    'full-access': { type: 'boolean' },
    'no-check': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  check: { name: { type: 'string' } },
  list: { json: { type: 'boolean' } },
  remove: { name: { type: 'string' } },
} as const satisfies Record<string, CommandOptions>;

const command: Command = {
  summary: 'Register, update, list or remove Dropbox apps (key, secret, scopes)',
  usage,
  options: {},
  subcommands,
  async run(ctx) {
    const [sub, ...rest] = ctx.argv;
    switch (sub) {
      case 'add':
        return add(ctx, rest);
      case 'list':
      case 'ls':
        return list(ctx, rest);
      case 'update':
        return update(ctx, rest);
      case 'check':
        return check(ctx, rest);
      case 'remove':
      case 'rm':
        return remove(ctx, rest);
      default:
        throw unknownSubcommand('app', sub, Object.keys(subcommands));
    }
  },
};
export default command;

function appJson(a: AppInfo): Record<string, unknown> {
  return {
    name: a.name,
    key: a.key,
    has_secret: a.hasSecret,
    scopes: a.scopes,
    team: a.team,
    access: a.access,
    created_at: new Date(a.createdAt).toISOString(),
  };
}

async function add(ctx: CommandContext, argv: string[]): Promise<void> {
  const { values } = parseOptions('app add', argv, subcommands.add);
  if (values.name === undefined) throw usageError('app add', 'missing --name NAME (a local name for the app, e.g. --name backup)');
  if (values.key === undefined || values.key.trim() === '') throw usageError('app add', 'missing --key KEY (the app key from the App Console)');
  const name = validateName('app', values.name);
  const port = intOption('app add', 'port', values.port, { min: 1, max: 65535 }) ?? DEFAULT_LOGIN_PORT;
  const key = values.key.trim();
  let secret: string | undefined;
  if (values.secret === '-') secret = (await readSecret(ctx, 'app secret')).trim();
  else if (values.secret !== undefined) secret = values.secret.trim();
  if (secret === '') throw usageError('app add', 'the app secret is empty (omit --secret for a PKCE-only app)');
  const scopes = scopeList(values.scope) ?? [];
  const team = values.team === true;
  const access = values['app-folder'] ? 'app_folder' : 'full';

  const doCheck = !values['no-check'];
  const app = await withSession(ctx, ({ dk }) =>
    dk.addApp({ name, key, ...(secret === undefined ? {} : { secret }), scopes, team, access, check: doCheck, signal: ctx.signal }),
  ).catch((err: unknown) => { throw withNoCheckAdvice(err); });
  const redirectUri = redirectUriFor(port);
  const checked = checkNote(app, doCheck);
  if (values.json) {
    writeJson(ctx, { app: appJson(app), redirect_uri: redirectUri, checked: doCheck && app.hasSecret, checklist: checklist(app, redirectUri) });
    return;
  }
  ctx.stdout.write(`Added app "${app.name}" (app key ${app.key}, ${app.hasSecret ? 'with its secret' : 'no secret: PKCE only'}). ${checked}\n\n`);
  ctx.stdout.write(`Finish the set-up in the Dropbox App Console (https://www.dropbox.com/developers/apps), in this app:\n`);
  checklist(app, redirectUri).forEach((line, i) => ctx.stdout.write(`  ${i + 1}. ${line}\n`));
  ctx.stdout.write(`\nThen connect an account:\n  dropkey login --app ${app.name}${port === DEFAULT_LOGIN_PORT ? '' : ` --port ${port}`}\n`);
  ctx.stdout.write(`On a machine without a browser:\n  dropkey login --app ${app.name} --no-redirect\n`);
}

function checklist(app: AppInfo, redirectUri: string): string[] {
  const needed = app.team ? 'team_info.read' : 'account_info.read';
  const scopes = app.scopes.length > 0 ? app.scopes : [];
  const missingCheck = scopes.length > 0 && !scopes.includes(needed)
    ? ` Also tick ${needed}: dropkey uses it to check each new connection.`
    : '';
  return [
    `Settings tab > OAuth 2 > Redirect URIs: add exactly ${redirectUri} and click Add ` +
      '(Dropbox compares it character for character, port and path included).',
    `Permissions tab: tick ${scopes.length > 0 ? scopes.join(', ') : `the scopes your program needs (and ${needed})`}, ` +
      'then click Submit at the bottom of the page (unsubmitted changes are lost).' + missingCheck,
    `Access type: the app must have been created as "${app.access === 'app_folder' ? 'App folder' : 'Full Dropbox'}"` +
      `${app.team ? ' with team scopes (a Business team app)' : ''}; it cannot be changed later. ` +
      `If it differs, tell dropkey: dropkey app update --name ${app.name} ${app.access === 'app_folder' ? '--full-access' : '--app-folder'}`,
    'Settings tab > OAuth 2 > Allow public clients (Implicit Grant & PKCE): "Allow"' +
      (app.hasSecret ? ' is not needed, since dropkey has the app secret.' : ' is required, since dropkey has no app secret.'),
  ];
}

async function update(ctx: CommandContext, argv: string[]): Promise<void> {
  const { values } = parseOptions('app update', argv, subcommands.update);
  if (values.name === undefined) throw usageError('app update', 'missing --name NAME (see dropkey app list)');
  const name = validateName('app', values.name);
  if (values.secret !== undefined && values['no-secret']) throw usageError('app update', '--secret and --no-secret contradict each other');
  if (values.team && values['no-team']) throw usageError('app update', '--team and --no-team contradict each other');
  if (values['app-folder'] && values['full-access']) throw usageError('app update', '--app-folder and --full-access contradict each other');
  let secret: string | null | undefined;
  if (values['no-secret']) secret = null;
  else if (values.secret === '-') secret = (await readSecret(ctx, 'app secret')).trim();
  else if (values.secret !== undefined) secret = values.secret.trim();
  if (secret === '') throw usageError('app update', 'the app secret is empty (use --no-secret for a PKCE-only app)');
  const scopes = scopeList(values.scope);
  const patch = {
    ...(values.key === undefined ? {} : { key: values.key.trim() }),
    ...(secret === undefined ? {} : { secret }),
    ...(scopes === undefined ? {} : { scopes }),
    ...(values.team ? { team: true } : values['no-team'] ? { team: false } : {}),
    ...(values['app-folder'] ? { access: 'app_folder' as const } : values['full-access'] ? { access: 'full' as const } : {}),
  };
  if (Object.keys(patch).length === 0) throw usageError('app update', 'nothing to change: give --key, --secret, --no-secret, --scope, --team, --no-team, --app-folder or --full-access');
  const doCheck = !values['no-check'];
  const app = await withSession(ctx, ({ dk }) => dk.updateApp(name, { ...patch, check: doCheck, signal: ctx.signal }))
    .catch((err: unknown) => { throw withNoCheckAdvice(err); });
  if (values.json) {
    writeJson(ctx, appJson(app));
    return;
  }
  const credentials = patch.key !== undefined || patch.secret !== undefined;
  ctx.stdout.write(`Updated app "${app.name}" (${Object.keys(patch).join(', ')}).${credentials ? ` ${checkNote(app, doCheck)}` : ''}\n`);
  if (!credentials || !doCheck || !app.hasSecret) ctx.stdout.write(`Check its key and secret with Dropbox: dropkey app check ${app.name}\n`);
}

/** What the output says about the check of a new key and secret. */
function checkNote(app: AppInfo, doCheck: boolean): string {
  if (!app.hasSecret) return 'Not checked with Dropbox: its check needs the app secret, so a wrong key shows at login.';
  return doCheck ? 'Dropbox accepted the key and secret.' : 'Not checked with Dropbox (--no-check).';
}

/** A check that could not be made may be skipped on purpose: the CLI's flag for it joins the advice. */
function withNoCheckAdvice(err: unknown): unknown {
  if (err instanceof DropkeyError && err.details?.['reason'] === 'app_check_failed') {
    return new DropkeyError(err.code, err.message, {
      cause: err.cause,
      hint: 'Check the network and DROPKEY_DROPBOX_URL, then run the same command again; to store the app without checking it, add --no-check.',
      details: err.details,
    });
  }
  return err;
}

async function check(ctx: CommandContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseOptions('app check', argv, subcommands.check, { positionals: 1 });
  if (values.name !== undefined && positionals[0] !== undefined && values.name !== positionals[0]) {
    throw usageError('app check', `two different app names given ("${values.name}" and "${positionals[0]}")`);
  }
  const raw = values.name ?? positionals[0];
  if (raw === undefined) throw usageError('app check', 'missing the app name (dropkey app check NAME)');
  const name = validateName('app', raw);
  const checked = await withSession(ctx, ({ dk }) => dk.checkApp(name, { signal: ctx.signal }));
  ctx.stdout.write(checked
    ? `Dropbox accepts the key and secret of app "${name}".\n`
    : `App "${name}" has no secret, so Dropbox cannot check it (its check needs the secret); a wrong key shows at login.\n`);
  return 0;
}

async function list(ctx: CommandContext, argv: string[]): Promise<void> {
  const { values } = parseOptions('app list', argv, subcommands.list);
  const apps = await withSession(ctx, ({ dk }) => dk.listApps());
  if (values.json) {
    writeJson(ctx, apps.map(appJson));
    return;
  }
  if (apps.length === 0) {
    ctx.stdout.write('No apps yet. Add one with: dropkey app add --name NAME --key KEY --secret -\n');
    return;
  }
  ctx.stdout.write(table(
    ['NAME', 'KEY', 'SECRET', 'TYPE', 'ACCESS', 'SCOPES'],
    apps.map((a) => [a.name, a.key, a.hasSecret ? 'yes' : 'no (PKCE)', a.team ? 'team' : 'user', a.access ?? '', a.scopes.join(' ') || '(all of the app)']),
  ));
}

async function remove(ctx: CommandContext, argv: string[]): Promise<void> {
  // `--name NAME` as in add and update, or the bare NAME that gh/rclone users type.
  const { values, positionals } = parseOptions('app remove', argv, subcommands.remove, { positionals: 1 });
  if (values.name !== undefined && positionals[0] !== undefined && values.name !== positionals[0]) {
    throw usageError('app remove', `two different app names given ("${values.name}" and "${positionals[0]}")`);
  }
  const raw = values.name ?? positionals[0];
  if (raw === undefined) throw usageError('app remove', 'missing the app name (dropkey app remove NAME)');
  const name = validateName('app', raw);
  await withSession(ctx, ({ dk }) => dk.removeApp(name));
  ctx.stdout.write(`Removed app "${name}".\n`);
}
