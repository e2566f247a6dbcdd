/**
 * `dropkey apikey create|list|revoke`: API keys for `dropkey serve`'s JSON API, managed straight in the store
 * (a running server sees a new key at once and a revoked one within its key cache time, 5 s). It goes through
 * the server's own ApiKeyService (server/services/api-keys.ts): the same checks, the same audit entries.
 */
import type { Command, CommandContext, CommandOptions } from '../context.js';
import { loadConfig, parseOptions, unknownSubcommand, usageError } from '../config.js';
import { writeJson } from '../output.js';

const usage = `Usage:
  dropkey apikey create --name NAME --permission PERM... (--connection NAME... | --all-connections) [--json]
  dropkey apikey list [--json]
  dropkey apikey revoke NAME

Permissions: token:read (GET /api/v1/connections/{name}/token), proxy (/proxy/{name}/...),
admin (refresh, revoke, connect links; with --all-connections also API keys and the audit log).
Repeat --permission and --connection for several. The key is printed ONCE: store it in your secret manager.
`;

const subcommands = {
  create: {
    name: { type: 'string' },
    permission: { type: 'string', multiple: true },
    connection: { type: 'string', multiple: true },
    'all-connections': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  list: { json: { type: 'boolean' } },
  revoke: {},
} as const satisfies Record<string, CommandOptions>;

const command: Command = {
  summary: 'Create, list or revoke API keys for dropkey serve',
  usage,
  options: {},
  subcommands,
  async run(ctx) {
    const [sub, ...rest] = ctx.argv;
    if (sub !== 'create' && sub !== 'list' && sub !== 'revoke') throw unknownSubcommand('apikey', sub, Object.keys(subcommands));
    const { openServerStores } = await import('../../server/main.js');
    const { ApiKeyService } = await import('../../server/services/api-keys.js');
    const { AuditLog } = await import('../../server/services/audit.js');
    const { apiKeyJson } = await import('../../connections/json.js');
    const { cliActor } = await import('../activity.js');
    const actor = cliActor(ctx.env);
    const open = async () => {
      // Read when the stores are opened, so that a usage error is reported as such first.
      const stores = await openServerStores(await loadConfig(ctx.env, ctx.cwd));
      const deps = { serverStore: stores.server, clock: Date.now };
      // No key cache here: every CLI run is a fresh process.
      const keys = new ApiKeyService({ ...deps, config: { apiKeyCacheMs: 0 } }, new AuditLog({ ...deps, logger: auditWarnings(ctx) }));
      return { stores, keys };
    };

    if (sub === 'create') {
      const { values } = parseOptions('apikey create', rest, subcommands.create);
      if (values.name === undefined) throw usageError('apikey', 'create needs --name NAME');
      const listed = values.connection ?? [];
      if (values['all-connections'] && listed.length > 0) throw usageError('apikey', 'give --connection or --all-connections, not both');
      if (!values['all-connections'] && listed.length === 0) throw usageError('apikey', 'create needs --connection NAME (repeatable) or --all-connections');
      const names = listed.flatMap((c) => c.split(',')).map((c) => c.trim()).filter(Boolean);
      // "*" means every connection, present and future: mixed with names it would silently widen a key meant for
      // a few connections to all of them, so it must stand alone.
      if (names.includes('*') && names.some((c) => c !== '*')) {
        throw usageError('apikey', '--connection "*" (every connection) cannot be combined with connection names; give one or the other');
      }
      const { stores, keys } = await open();
      try {
        const { key, record: rec } = await keys.create({
          name: values.name,
          permissions: values.permission ?? [],
          connections: values['all-connections'] || names.includes('*') ? '*' : names,
          actor,
        });
        const { name, permissions, connections } = rec;
        const missing = connections === '*' ? [] : (await Promise.all(connections.map(async (c) => ((await stores.core.getConnection(c)) ? null : c)))).filter((c): c is string => c !== null);
        if (values.json) {
          // The API's answer to POST /api/v1/api-keys: the key (shown once) beside the key's record.
          writeJson(ctx, { key, api_key: apiKeyJson(rec) });
        } else {
          ctx.stdout.write(`${key}\n`);
          ctx.stderr.write(`Created API key "${name}" (${permissions.join(', ')}; connections: ${connections === '*' ? 'all' : connections.join(', ')}).\nThis is the only time the key is shown: store it now.\n`);
        }
        if (missing.length > 0) ctx.stderr.write(`Note: no connection named ${missing.map((m) => `"${m}"`).join(', ')} exists yet; the key will work once it does.\n`);
      } finally {
        await stores.close();
      }
      return;
    }

    if (sub === 'list') {
      const { values } = parseOptions('apikey list', rest, subcommands.list);
      const { stores, keys: service } = await open();
      try {
        const keys = await service.list();
        const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
        if (values.json) {
          writeJson(ctx, keys.map(apiKeyJson));
          return;
        }
        if (keys.length === 0) {
          ctx.stdout.write('No API keys. Create one with: dropkey apikey create --name NAME --permission token:read --connection NAME\n');
          return;
        }
        for (const k of keys) {
          const state = k.revokedAt !== null ? `revoked ${iso(k.revokedAt)}` : `last used ${iso(k.lastUsedAt) ?? 'never'}`;
          ctx.stdout.write(`${k.name}  ${k.prefix}…  ${k.permissions.join(',')}  connections: ${k.connections === '*' ? 'all' : k.connections.join(',')}  tokens: ${k.tokenHandouts}  ${state}\n`);
        }
      } finally {
        await stores.close();
      }
      return;
    }

    const { positionals } = parseOptions('apikey revoke', rest, subcommands.revoke, { positionals: 1 });
    if (positionals[0] === undefined) throw usageError('apikey', 'revoke needs the key name');
    const name = positionals[0];
    const { stores, keys } = await open();
    try {
      await keys.revoke(name, actor);
      ctx.stdout.write(`Revoked API key "${name}". A running server refuses it within 5 seconds.\n`);
    } finally {
      await stores.close();
    }
  },
};
/** The audit log never fails an action that already happened (AuditLog); on the command line it says so. */
function auditWarnings(ctx: CommandContext): { error(obj: object, msg: string): void } {
  return { error: (_obj, msg) => void ctx.stderr.write(`Warning: ${msg}.\n`) };
}

export default command;
