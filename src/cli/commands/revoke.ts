import type { Command, CommandOptions } from '../context.js';
import { parseOptions } from '../config.js';
import { writeJson } from '../output.js';
import { withSession } from '../session.js';
import { validateName } from '../../connections/names.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';

const usage = `Usage: dropkey revoke [--connection NAME] [--yes] [--force] [--json]

Revokes the connection at Dropbox (its access token and refresh token stop working everywhere), then
deletes it locally. If Dropbox cannot be reached, nothing is deleted: run it again later, or use --force
to delete it locally anyway: its refresh token then stays valid at Dropbox until you unlink the app at
https://www.dropbox.com/account/connected_apps.

On a terminal it asks for confirmation first. Scripts (standard input not a terminal) must pass --yes.

Options:
  --connection NAME  The connection to revoke (default: $DROPKEY_CONNECTION or "default").
  --yes, -y          Do not ask for confirmation.
  --force            Delete it locally even when Dropbox cannot be reached or refuses.
  --json             Print the result as JSON.
`;

const options = {
  connection: { type: 'string' },
  yes: { type: 'boolean', short: 'y' },
  force: { type: 'boolean' },
  json: { type: 'boolean' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Revoke a connection at Dropbox, then delete it locally',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('revoke', ctx.argv, options);
    const r = await withSession(ctx, async ({ dk, cfg }) => {
      const n = validateName('connection', values.connection ?? cfg.connection);
      if (!values.yes) {
        // Scripts must not hang on a question nobody sees: without a terminal, --yes is required.
        if (!ctx.stdin.isTTY) {
          throw new DropkeyError(ErrorCodes.BAD_INPUT, `revoke asks for confirmation, but standard input is not a terminal; "${n}" was not revoked.`, {
            hint: 'Pass --yes to revoke without asking (in scripts).',
          });
        }
        await dk.get(n); // an unknown name is said before the question
        const { confirm } = await import('../input.js');
        if (!(await confirm(ctx, `Revoke "${n}" at Dropbox and delete it locally?`))) return null;
      }
      return dk.revoke(n, { ...(values.force ? { force: true } : {}), signal: ctx.signal });
    });
    if (r === null) {
      ctx.stderr.write('Not revoked; nothing was changed.\n');
      return 1;
    }
    if (values.json) writeJson(ctx, { connection: r.connection, revoked_at_dropbox: r.revokedAtDropbox, deleted: true, message: r.message });
    else ctx.stdout.write(`${r.message}\n`);
  },
};
export default command;
