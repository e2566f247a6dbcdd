import type { Command, CommandOptions } from '../context.js';
import { parseOptions } from '../config.js';
import { writeJson } from '../output.js';
import { withSession } from '../session.js';
import { validateName } from '../../connections/names.js';

const usage = `Usage: dropkey revoke [--connection NAME] [--force] [--json]

Revokes the connection at Dropbox (its access token and refresh token stop working everywhere), then
deletes it locally. If Dropbox cannot be reached, nothing is deleted: run it again later, or use --force
to delete it locally anyway: its refresh token then stays valid at Dropbox until you unlink the app at
https://www.dropbox.com/account/connected_apps.
`;

const options = { connection: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' } } as const satisfies CommandOptions;

const command: Command = {
  summary: 'Revoke a connection at Dropbox, then delete it locally',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('revoke', ctx.argv, options);
    const r = await withSession(ctx, async ({ dk, cfg }) => {
      const n = validateName('connection', values.connection ?? cfg.connection);
      return dk.revoke(n, { ...(values.force ? { force: true } : {}), signal: ctx.signal });
    });
    if (values.json) writeJson(ctx, { connection: r.connection, revoked_at_dropbox: r.revokedAtDropbox, deleted: true, message: r.message });
    else ctx.stdout.write(`${r.message}\n`);
  },
};
export default command;
