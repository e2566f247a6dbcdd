import type { Command, CommandOptions } from '../context.js';
import { parseOptions } from '../config.js';
import { expiresIn, writeJson } from '../output.js';
import { withSession } from '../session.js';
import { connectionJson } from '../view.js';
import { validateName } from '../../connections/names.js';

const usage = `Usage: dropkey refresh [--connection NAME] [--json]

Gets a new access token from Dropbox now, even if the current one is still valid. Prints no token
(use dropkey token for that).
`;

const options = { connection: { type: 'string' }, json: { type: 'boolean' } } as const satisfies CommandOptions;

const command: Command = {
  summary: 'Refresh a connection\'s access token now',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('refresh', ctx.argv, options);
    const c = await withSession(ctx, async ({ dk, cfg }) => {
      const name = validateName('connection', values.connection ?? cfg.connection);
      return dk.refresh(name, { force: true, signal: ctx.signal });
    });
    const now = Date.now();
    if (values.json) writeJson(ctx, connectionJson(c, now));
    else ctx.stdout.write(`Refreshed "${c.name}": the new access token expires in ${expiresIn(c.expiresAt, now)}.\n`);
  },
};
export default command;
