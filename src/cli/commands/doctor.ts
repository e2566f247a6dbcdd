/**
 * `dropkey doctor`: explains in plain words what is wrong with a connection or a pasted token, each finding with
 * its fix. Exit 0 when healthy, 1 when it found a problem (a finding of severity "error").
 */
import type { Command, CommandOptions } from '../context.js';
import { parseOptions, scopeList, usageError } from '../config.js';
import { readSecret } from '../input.js';
import { adviceText, fixCommand } from '../fix.js';
import { terminalSafe, writeJson } from '../output.js';
import { withSession } from '../session.js';
import { validateName } from '../../connections/names.js';

const usage = `Usage: dropkey doctor [--connection NAME] [--token TOKEN|-] [--need SCOPE...] [--json]

Checks a stored connection (default) or a token you paste, asks Dropbox about it, and explains every
problem with its fix: token shape (truncated, quotes or spaces pasted along, a refresh token where an
access token belongs), expired, revoked, missing scopes, app folder vs full access, a team token used
without Select-User, wrong app key or secret, no refresh token, clock skew.

Options:
  --connection NAME  Connection to check (default: $DROPKEY_CONNECTION or "default").
  --token TOKEN      Check this access token instead ("-" reads it from standard input, recommended).
  --need SCOPE       A scope your job needs (repeat, or space-separated), e.g. --need files.content.write.
  --json             Print {healthy, subject, findings: [{id, severity, message, fix}]}; each fix is the
                     advice in words, then the command to run when there is one.

Exit status: 0 healthy, 1 a problem was found.
`;

const MARK = { error: 'x', warning: '!', info: 'i' } as const;

const options = {
  connection: { type: 'string' },
  token: { type: 'string' },
  need: { type: 'string', multiple: true },
  json: { type: 'boolean' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Explain what is wrong with a connection or a pasted token, and how to fix it',
  usage,
  options,
  async run(ctx) {
    const { values } = parseOptions('doctor', ctx.argv, options);
    if (values.token !== undefined && values.connection !== undefined) {
      throw usageError('doctor', 'give either --connection NAME or --token TOKEN, not both');
    }
    const need = scopeList(values.need);
    // A pasted token is passed on as given (only the newline that ends the input is dropped): its quotes and
    // spaces are findings, not something to hide.
    const token = values.token === undefined ? undefined : values.token === '-' ? await readSecret(ctx, 'access token') : values.token;
    const report = await withSession(ctx, async ({ dk, cfg }) => {
      const connection = token === undefined ? validateName('connection', values.connection ?? cfg.connection) : undefined;
      return dk.doctor({
        ...(connection === undefined ? {} : { connection }),
        ...(token === undefined ? {} : { token }),
        ...(need === undefined ? {} : { need }),
        signal: ctx.signal,
      });
    });
    if (values.json) {
      writeJson(ctx, { ...report, findings: report.findings.map((f) => ({ id: f.id, severity: f.severity, message: f.message, fix: adviceText(f) })) });
    } else {
      ctx.stdout.write(`dropkey doctor: ${report.subject === 'pasted token' ? 'the pasted token' : `connection "${report.subject}"`}\n`);
      for (const f of report.findings) {
        ctx.stdout.write(terminalSafe(`\n[${MARK[f.severity]}] ${f.message}\n    Fix: ${f.hint}\n${f.fix ? `    Run: ${fixCommand(f.fix)}\n` : ''}`));
      }
      const problems = report.findings.filter((f) => f.severity === 'error').length;
      ctx.stdout.write(report.healthy
        ? `\nHealthy${report.findings.length > 0 ? ' (see the notes above)' : ': no problem found'}.\n`
        : `\n${problems} problem${problems === 1 ? '' : 's'} found.\n`);
    }
    return report.healthy ? 0 : 1;
  },
};
export default command;
