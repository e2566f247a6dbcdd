import type { Command, CommandOptions } from '../context.js';
import { parseOptions } from '../config.js';
import { expiresIn, oneLineSafe, table, writeJson } from '../output.js';
import { withSession } from '../session.js';
import { connectionJson, linkedByText } from '../view.js';

const usage = `Usage: dropkey list [--json]

Lists connections: name, account email, team, scopes, when the access token expires, and state
(active, needs_reauth, revoked); for team apps, the admin who linked the app ("LINKED BY", when Dropbox
said). Shows no token.
`;

const options = { json: { type: 'boolean' } } as const satisfies CommandOptions;

const command: Command = {
  summary: 'List connections (account, team, scopes, expiry, state)',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('list', ctx.argv, options);
    const conns = await withSession(ctx, ({ dk }) => dk.list());
    const now = Date.now();
    if (values.json) {
      writeJson(ctx, conns.map((c) => connectionJson(c, now)));
      return;
    }
    if (conns.length === 0) {
      ctx.stdout.write('No connections yet. Connect an account with: dropkey login --app NAME\n');
      return;
    }
    // The column appears once a team connection says who linked it; scopes stay last (the widest column).
    const linked = conns.some((c) => c.linkedBy !== null);
    ctx.stdout.write(table(
      ['NAME', 'APP', 'ACCOUNT', 'TEAM', ...(linked ? ['LINKED BY'] : []), 'EXPIRES IN', 'STATE', 'SCOPES'],
      conns.map((c) => [
        c.name,
        c.app,
        c.email ?? c.accountId,
        c.teamName,
        ...(linked ? [linkedByText(c.linkedBy)] : []),
        c.refreshable || c.expiresAt === null ? expiresIn(c.expiresAt, now) : `${expiresIn(c.expiresAt, now)} (no refresh)`,
        c.state,
        c.scopes.join(' '),
      ]),
    ));
    const broken = conns.filter((c) => c.state !== 'active');
    for (const c of broken) {
      const why = c.lastError ? ` (${oneLineSafe(c.lastError).slice(0, 200)})` : '';
      ctx.stderr.write(`"${c.name}" is ${c.state}${why}: fix it with dropkey login --connection ${c.name} --app ${c.app}\n`);
    }
  },
};
export default command;

