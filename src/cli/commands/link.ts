/**
 * `dropkey link create|list|revoke`: connect links from the command line, for an account owner who has no dropkey
 * of their own (docs/headless-login.md). They are made in the server store, as `dropkey apikey` makes keys, by the
 * server's own createConnectLink (server/oauth/flow.ts): the same checks, the same audit entry, and the same link
 * a running `dropkey serve` on that store then serves at PUBLIC_URL/connect/TOKEN.
 */
import type { Command, CommandContext, CommandOptions } from '../context.js';
import { loadConfig, parseOptions, unknownSubcommand, usageError } from '../config.js';
import { duration, writeJson } from '../output.js';
import type { Dropkey } from '../../connections/dropkey.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';

const usage = `Usage:
  dropkey link create [--connection NAME] [--app NAME] [--expires 30m] [--public-url URL] [--json]
  dropkey link list [--json]
  dropkey link revoke ID

Creates a single-use link that lets the owner of a Dropbox account connect it as NAME through dropkey serve,
without a dropkey of their own: send them the printed URL. dropkey serve must run on this data store and be
reachable at its public URL when they open it.

Options (create):
  --connection NAME  The connection the owner's account becomes (default: $DROPKEY_CONNECTION or "default";
                     --name NAME is the same). An existing one is re-authorised.
  --app NAME         The app to connect with (default: the connection's app, or the only app there is). The
                     owner is asked for the app's scopes (dropkey app add/update --scope).
  --expires TIME     How long the link works: 90s, 30m, 2h, 7d, or seconds (default 30m; 1m to 7d).
  --public-url URL   The URL dropkey serve is reached at, as given to serve (default: $DROPKEY_PUBLIC_URL).
  --json             Print {url, expires_at, connection, app, id} (the API's answer, plus the link's id).
`;

const subcommands = {
  create: {
    connection: { type: 'string' },
    name: { type: 'string' },
    app: { type: 'string' },
    expires: { type: 'string' },
    'public-url': { type: 'string' },
    json: { type: 'boolean' },
  },
  list: { json: { type: 'boolean' } },
  revoke: {},
} as const satisfies Record<string, CommandOptions>;

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** "30m", "2h", "7d", "90s" or bare seconds → seconds; the bounds are the server's (MIN/MAX_LINK_TTL_S). */
export function parseExpires(value: string, min: number, max: number): number {
  const m = /^(\d{1,7})([smhd]?)$/.exec(value.trim());
  const seconds = m ? Number(m[1]) * UNITS[m[2] || 's']! : NaN;
  if (!Number.isSafeInteger(seconds) || seconds < min || seconds > max) {
    throw usageError('link', `--expires ${JSON.stringify(value)}: give a time from ${duration(min)} to ${duration(max)}, such as 30m, 2h or 7d`);
  }
  return seconds;
}

const command: Command = {
  summary: 'Create, list or revoke connect links for an account owner without dropkey',
  usage,
  options: {},
  subcommands,
  async run(ctx) {
    const [sub, ...rest] = ctx.argv;
    if (sub !== 'create' && sub !== 'list' && sub !== 'revoke') throw unknownSubcommand('link', sub, Object.keys(subcommands));
    const { MAX_LINK_TTL_S, MIN_LINK_TTL_S } = await import('../../server/oauth/flow.js');
    const config = await loadConfig(ctx.env, ctx.cwd);
    const open = async (publicUrl: string) => {
      const { openServerStores } = await import('../../server/main.js');
      const { AuditLog } = await import('../../server/services/audit.js');
      const { ServerPaths } = await import('../../server/services/paths.js');
      const { defaultConfig } = await import('../../server/deps.js');
      const { Dropkey } = await import('../../connections/dropkey.js');
      const { randomBytes } = await import('node:crypto');
      const stores = await openServerStores(config);
      const dropkey = await Dropkey.open({ store: stores.core, urls: config.urls });
      const deps = { serverStore: stores.server, clock: Date.now };
      return {
        stores,
        s: {
          ...deps,
          config: defaultConfig(publicUrl),
          dropkey,
          audit: new AuditLog({ ...deps, logger: auditWarnings(ctx) }),
          paths: new ServerPaths(publicUrl),
          randomBytes,
        },
        close: async () => {
          await dropkey.close();
          await stores.close();
        },
      };
    };

    if (sub === 'create') {
      const { values } = parseOptions('link create', rest, subcommands.create);
      if (values.connection !== undefined && values.name !== undefined && values.connection !== values.name) {
        throw usageError('link', 'give the connection once: --connection NAME (or --name NAME)');
      }
      const connection = values.connection ?? values.name ?? config.connection;
      const expiresIn = values.expires === undefined ? undefined : parseExpires(values.expires, MIN_LINK_TTL_S, MAX_LINK_TTL_S);
      const publicUrl = await publicUrlOf(values['public-url'], config.publicUrl);
      const { s, close } = await open(publicUrl);
      try {
        if (values.app === undefined) await appIsKnown(s.dropkey, connection);
        const { createConnectLink } = await import('../../server/oauth/flow.js');
        const link = await createConnectLink(s, {
          connection,
          ...(values.app === undefined ? {} : { app: values.app }),
          ...(expiresIn === undefined ? {} : { expiresIn }),
          actor: (await import('../activity.js')).cliActor(ctx.env),
        });
        const expiresAt = new Date(link.expiresAt).toISOString();
        if (values.json) {
          writeJson(ctx, { url: link.url, expires_at: expiresAt, connection: link.connection, app: link.app, id: link.id });
          return;
        }
        ctx.stdout.write(`${link.url}\n`);
        ctx.stderr.write(
          `Connect link for "${link.connection}" (app ${link.app}): it works once, until ${expiresAt} (${duration(Math.round((link.expiresAt - Date.now()) / 1000))}).\n` +
            `Send it to the owner of the Dropbox account. dropkey serve must be running at ${publicUrl} on this data store when they open it.\n` +
            `See pending links with: dropkey link list; cancel this one with: dropkey link revoke ${link.id}\n`,
        );
      } finally {
        await close();
      }
      return;
    }

    if (sub === 'list') {
      const { values } = parseOptions('link list', rest, subcommands.list);
      const { openServerStores } = await import('../../server/main.js');
      const stores = await openServerStores(config);
      try {
        const now = Date.now();
        const links = await stores.server.listConnectLinks(now);
        const iso = (t: number) => new Date(t).toISOString();
        if (values.json) {
          writeJson(ctx, links.map((l) => ({ id: l.id, connection: l.connection, app: l.app, created_at: iso(l.createdAt), created_by: l.createdBy, expires_at: iso(l.expiresAt) })));
          return;
        }
        if (links.length === 0) {
          ctx.stdout.write('No pending connect links. Create one with: dropkey link create --connection NAME\n');
          return;
        }
        for (const l of links) {
          ctx.stdout.write(`${l.id}  ${l.connection}  app ${l.app}  by ${l.createdBy}  expires ${iso(l.expiresAt)} (in ${duration(Math.round((l.expiresAt - now) / 1000))})\n`);
        }
      } finally {
        await stores.close();
      }
      return;
    }

    const { positionals } = parseOptions('link revoke', rest, subcommands.revoke, { positionals: 1 });
    const id = positionals[0];
    if (id === undefined) throw usageError('link', 'revoke needs the link id (see dropkey link list)');
    const { openServerStores } = await import('../../server/main.js');
    const { AuditLog } = await import('../../server/services/audit.js');
    const stores = await openServerStores(config);
    try {
      const link = await stores.server.getConnectLink(id);
      const now = Date.now();
      if (!link) {
        throw new DropkeyError(ErrorCodes.NOT_FOUND, `No connect link has the id "${id}".`, { hint: 'The ids of pending links are in the list of connect links (dropkey link list).' });
      }
      // The store has no separate "revoked" state: a revoked link is used up, at once and for good, so whoever
      // opens it is told it was already used, and an owner halfway through their consent cannot finish.
      if (!(await stores.server.claimConnectLink(link.id, now))) {
        ctx.stdout.write(`Connect link ${id} for "${link.connection}" no longer works (it was used or has expired); nothing to do.\n`);
        return;
      }
      const deps = { serverStore: stores.server, clock: () => now };
      await new AuditLog({ ...deps, logger: auditWarnings(ctx) }).write((await import('../activity.js')).cliActor(ctx.env), 'connect_link.revoked', link.connection, { app: link.app, link: link.id });
      ctx.stdout.write(`Revoked connect link ${id} for "${link.connection}": it no longer works.\n`);
    } finally {
      await stores.close();
    }
  },
};

/**
 * Without --app, the link's app is the connection's, or the only one registered (as createConnectLink decides);
 * when neither says, the command line asks for --app by its name (createConnectLink speaks of the API's field).
 */
async function appIsKnown(dk: Pick<Dropkey, 'list' | 'listApps'>, connection: string): Promise<void> {
  if ((await dk.list()).some((c) => c.name === connection)) return;
  const apps = await dk.listApps();
  if (apps.length === 1) return;
  if (apps.length === 0) {
    throw new DropkeyError(ErrorCodes.NOT_FOUND, 'No Dropbox app is registered yet: a connect link needs one.', {
      hint: 'Register your Dropbox app first (its key and secret from the App Console).',
      fix: { action: 'app-add' },
    });
  }
  throw usageError('link', `several apps are registered (${apps.map((a) => a.name).join(', ')}): say which one with --app NAME`);
}

/** --public-url, else DROPKEY_PUBLIC_URL: the link is a URL on the server, which only the user can say. */
async function publicUrlOf(flag: string | undefined, configured: string | undefined): Promise<string> {
  if (flag !== undefined) {
    const { validatePublicUrl } = await import('../../server/main.js');
    return validatePublicUrl(flag);
  }
  if (configured !== undefined) return configured;
  throw new DropkeyError(ErrorCodes.BAD_INPUT, 'A connect link is a URL on your dropkey serve, and its public URL is not known here.', {
    hint: 'Give the URL the owner will reach dropkey serve at with --public-url (the same as serve\'s --public-url), or set DROPKEY_PUBLIC_URL.',
  });
}

/** The audit log never fails an action that already happened (AuditLog); on the command line it says so. */
function auditWarnings(ctx: CommandContext): { error(obj: object, msg: string): void } {
  return { error: (_obj, msg) => void ctx.stderr.write(`Warning: ${msg}.\n`) };
}

export default command;
