import { DropkeyError } from '../errors.js';
import { commands, usage } from './cli.js';
import type { CommandContext } from './context.js';

import { commandContext } from './process.js';
import { ExitCodes, reportError } from './report.js';
import { didYouMean } from './suggest.js';

export { ExitCodes, reportError };

/**
 * The only place where errors become exit codes and messages. Messages are written to stderr;
 * a DropkeyError's hint follows on its own line. Unknown errors print their message only (never a dump
 * of objects that could hold secrets) unless DROPKEY_DEBUG is set.
 */
export async function run(argv: string[], ctx: Omit<CommandContext, 'argv'>): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    ctx.stdout.write(await usage());
    return name === undefined ? ExitCodes.USAGE : ExitCodes.OK;
  }
  if (name === '--version' || name === '-v') {
    const { createRequire } = await import('node:module');
    const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
    ctx.stdout.write(`${pkg.version}\n`);
    return ExitCodes.OK;
  }
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!load) {
    const flag = name.startsWith('-');
    ctx.stderr.write(`dropkey: unknown ${flag ? 'option' : 'command'} "${name}"${didYouMean(name, flag ? ['--help', '--version'] : Object.keys(commands))}.\n\n${await usage()}`);
    return ExitCodes.USAGE;
  }
  try {
    const command = (await load()).default;
    if (rest.includes('--help') || rest.includes('-h')) {
      ctx.stdout.write(`${command.usage.trimEnd()}\n`);
      return ExitCodes.OK;
    }
    const code = await command.run(commandContext(ctx, rest));
    return typeof code === 'number' ? code : ExitCodes.OK;
  } catch (err) {
    return reportError(err, ctx);
  }
}

export { DropkeyError };
