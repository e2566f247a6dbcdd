/**
 * `dropkey emulator`: runs the local Dropbox until Ctrl-C (docs/emulator.md). The first line of standard output is
 * always `dropkey emulator listening on <url>` so scripts can wait for it and read the real port.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { parseArgs } from 'node:util';
import type { Command, CommandContext, CommandOptions } from '../context.js';

const usage = `Usage: dropkey emulator [options]

Runs a local Dropbox (OAuth, users, files and team routes, control API under /_emulator/).

Options:
  --port N              port to listen on (default 0: any free port; the real one is printed)
  --host H              address to bind (default 127.0.0.1)
  --seed FILE           JSON {"apps": [...], "accounts": [...]} to start with instead of the demo seed
  --token-lifetime S    lifetime of access tokens in seconds (default 14400)
  --auto-approve        the consent page approves at once as the first account (headless tests)
  --data DIR            keep state and file contents in DIR across restarts (default: memory only)
  --no-control          disable the /_emulator/ control API
  --tls-cert FILE       serve HTTPS with this PEM certificate (needs --tls-key)
  --tls-key FILE        PEM private key for --tls-cert

See docs/emulator.md.
`;

function bad(message: string, hint?: string): DropkeyError {
  return new DropkeyError(ErrorCodes.BAD_INPUT, message, hint === undefined ? {} : { hint });
}

function intOption(value: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) throw bad(`--${name} must be a whole number from ${min} to ${max}, got "${value}"`);
  return Number(value);
}

async function readInput(ctx: CommandContext, file: string, what: string): Promise<string> {
  try {
    return await readFile(resolve(ctx.cwd, file), 'utf8');
  } catch (err) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `cannot read ${what} file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

const options = {
  port: { type: 'string' },
  host: { type: 'string' },
  seed: { type: 'string' },
  'token-lifetime': { type: 'string' },
  'auto-approve': { type: 'boolean' },
  data: { type: 'string' },
  'no-control': { type: 'boolean' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
} as const satisfies CommandOptions;

const command: Command = {
  summary: 'Run a local Dropbox emulator (OAuth, files, team routes)',
  usage,
  options,
  async run(ctx) {
    // Parsed by node:util directly, so its errors keep Node's wording ("Unknown option '--x'") as they always had;
    // reportError maps them to exit 2.
    const { values } = parseArgs({ args: ctx.argv, options, strict: true, allowPositionals: false });
    const port = intOption(values.port, 'port', 0, 0, 65535);
    const lifetime = intOption(values['token-lifetime'], 'token-lifetime', 14400, 1, 10 * 365 * 86400);
    const host = values.host ?? '127.0.0.1';
    if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) {
      throw bad('--tls-cert and --tls-key go together', 'Give both, e.g. --tls-cert cert.pem --tls-key key.pem');
    }
    let seed: unknown;
    if (values.seed !== undefined) {
      try {
        seed = JSON.parse(await readInput(ctx, values.seed, 'seed'));
      } catch (err) {
        if (err instanceof DropkeyError) throw err;
        throw bad(`seed file ${values.seed} is not valid JSON`, 'The seed format is {"apps": [...], "accounts": [...]}; see docs/emulator.md.');
      }
      if (typeof seed !== 'object' || seed === null || Array.isArray(seed)) throw bad(`seed file ${values.seed} must hold a JSON object {"apps": [...], "accounts": [...]}`);
    }
    const tls =
      values['tls-cert'] !== undefined && values['tls-key'] !== undefined
        ? { cert: await readInput(ctx, values['tls-cert'], 'TLS certificate'), key: await readInput(ctx, values['tls-key'], 'TLS key') }
        : undefined;

    const { createEmulator } = await import('../../emulator/index.js');
    let emulator;
    try {
      emulator = createEmulator({
        tokenLifetimeSeconds: lifetime,
        autoApprove: values['auto-approve'] === true,
        control: values['no-control'] !== true,
        ...(values.data !== undefined ? { dataDir: resolve(ctx.cwd, values.data) } : {}),
        ...(seed !== undefined ? { seed: seed as never } : {}),
        ...(tls ? { tls } : {}),
        onError: (err) => ctx.stderr.write(`dropkey emulator: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`),
      });
    } catch (err) {
      throw bad(`cannot start the emulator: ${(err as Error).message}`);
    }
    let url: string;
    try {
      ({ url } = await emulator.listen(port, host));
    } catch (err) {
      await emulator.close();
      const code = (err as NodeJS.ErrnoException).code;
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `cannot listen on ${host}:${port}: ${code ?? (err as Error).message}`, {
        cause: err,
        hint: code === 'EADDRINUSE' ? 'Pick another --port, or --port 0 for any free one.' : 'Check --host and --port.',
      });
    }
    ctx.stdout.write(`dropkey emulator listening on ${url}\n`);
    const out: string[] = [];
    for (const app of await emulator.control.apps()) {
      out.push(`app ${app['name']}: key ${app['key']} secret ${app['secret']}${app['team'] ? ' (team app)' : ''}${app['access'] === 'app_folder' ? ' (app folder)' : ''}`);
    }
    for (const a of await emulator.control.accounts()) {
      const team = a['team_id'] ? ` (team ${a['team_name']}${a['team_admin'] ? ', admin' : ''})` : '';
      out.push(`account ${a['email']}: ${a['account_id']}${team}`);
    }
    out.push(`authorize URL: ${url}/oauth2/authorize   token URL: ${url}/oauth2/token   API: ${url}/2/<route>`);
    if (values['no-control'] !== true) out.push(`control API: ${url}/_emulator/ (see docs/emulator.md)`);
    ctx.stdout.write(`${out.join('\n')}\n`);

    await new Promise<void>((resolveWait) => {
      if (ctx.signal.aborted) resolveWait();
      else ctx.signal.addEventListener('abort', () => resolveWait(), { once: true });
    });
    await emulator.close();
    ctx.stderr.write('dropkey emulator stopped\n');
  },
};

export default command;
