import type { ConnectionInfo } from '../../connections/types.js';
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

/**
 * Connections are read a page at a time (Store.listConnectionPage: one index range each, no token decrypted) and
 * written as they come, so time and memory grow with the number of connections only through the rows themselves
 * (docs/scale.md). The table's columns are as wide as the first page needs; later rows with longer cells push their
 * line out rather than hold every row in memory.
 */
const PAGE = 1000;

/**
 * The columns: LINKED BY appears when a connection of the first page says who linked its team app (the first page
 * is every connection up to PAGE of them; beyond that the column is chosen by the first page, as the widths are).
 * Scopes stay last (the widest column).
 */
function headers(linked: boolean): string[] {
  return ['NAME', 'APP', 'ACCOUNT', 'TEAM', ...(linked ? ['LINKED BY'] : []), 'EXPIRES IN', 'STATE', 'SCOPES'];
}

function row(c: ConnectionInfo, now: number, linked: boolean): string[] {
  return [
    c.name,
    c.app,
    c.email ?? c.accountId ?? '',
    c.teamName ?? '',
    ...(linked ? [linkedByText(c.linkedBy) ?? ''] : []),
    c.refreshable || c.expiresAt === null ? expiresIn(c.expiresAt, now) : `${expiresIn(c.expiresAt, now)} (no refresh)`,
    c.state,
    c.scopes.join(' '),
  ];
}

const command: Command = {
  summary: 'List connections (account, team, scopes, expiry, state)',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('list', ctx.argv, options);
    const now = Date.now();
    const broken: Pick<ConnectionInfo, 'name' | 'app' | 'state' | 'lastError'>[] = [];
    let count = 0;
    let widths: number[] | undefined;
    let linked = false;
    await withSession(ctx, async ({ dk }) => {
      let after: string | undefined;
      do {
        const page = await dk.listPage({ limit: PAGE, ...(after === undefined ? {} : { after }) });
        after = page.next ?? undefined;
        const first = count === 0;
        count += page.connections.length;
        if (values.json) {
          // The same text writeJson gives for the whole list, one page at a time.
          const items = page.connections.map((c) => jsonItem(connectionJson(c, now)));
          if (items.length > 0) ctx.stdout.write(`${first ? '[\n' : ',\n'}${items.join(',\n')}`);
          continue;
        }
        if (page.connections.length === 0) continue;
        if (widths === undefined) linked = page.connections.some((c) => c.linkedBy !== null);
        const rows = page.connections.map((c) => row(c, now, linked));
        if (widths === undefined) {
          const heads = headers(linked);
          const text = table(heads, rows);
          widths = heads.map((_, i) => Math.max(heads[i]!.length, ...rows.map((r) => cellText(r[i]!).length)));
          ctx.stdout.write(text);
        } else {
          ctx.stdout.write(rows.map((r) => line(r, widths!)).join(''));
        }
        for (const c of page.connections) if (c.state !== 'active') broken.push({ name: c.name, app: c.app, state: c.state, lastError: c.lastError });
      } while (after !== undefined);
    });
    if (values.json) {
      if (count === 0) writeJson(ctx, []);
      else ctx.stdout.write('\n]\n');
      return;
    }
    if (count === 0) {
      ctx.stdout.write('No connections yet. Connect an account with: dropkey login --app NAME\n');
      return;
    }
    for (const c of broken) {
      const why = c.lastError ? ` (${oneLineSafe(c.lastError).slice(0, 200)})` : '';
      ctx.stderr.write(`"${c.name}" is ${c.state}${why}: fix it with dropkey login --connection ${c.name} --app ${c.app}\n`);
    }
  },
};
export default command;

/** What table() prints for a cell. */
function cellText(c: string): string {
  return c === '' ? '-' : oneLineSafe(c);
}

/** One row as table() prints it with these column widths. */
function line(r: string[], widths: number[]): string {
  return `${r.map((c, i) => (i === r.length - 1 ? cellText(c) : cellText(c).padEnd(widths[i]!))).join('  ').trimEnd()}\n`;
}

/** One element of writeJson's array text: the element indented by two spaces, with writeJson's escapes. */
function jsonItem(value: unknown): string {
  const text = JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return text.replace(/^/gm, '  ');
}
