import { DropkeyError } from '../errors.js';
import { commands } from './cli.js';
import type { CommandContext } from './context.js';

import { commandContext } from './process.js';
import { ExitCodes, reportError } from './report.js';

export { ExitCodes, reportError };

function usage(): string {
  const names = Object.keys(commands);
  const width = Math.max(...names.map((n) => n.length));
  const lines = names.map((n) => `  ${n.padEnd(width)}  ${commands[n]!.summary}`);
  return `Usage: dropkey <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun "dropkey <command> --help" for a command's options.\n`;
}

/**
 * The only place where errors become exit codes and messages. Messages are written to stderr;
 * a DropkeyError's hint follows on its own line. Unknown errors print their message only (never a dump
 * of objects that could hold secrets) unless DROPKEY_DEBUG is set.
 */
export async function run(argv: string[], ctx: Omit<CommandContext, 'argv'>): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    ctx.stdout.write(usage());
    return name === undefined ? ExitCodes.USAGE : ExitCodes.OK;
  }
  if (name === '--version' || name === '-v') {
    const { createRequire } = await import('node:module');
    const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
    ctx.stdout.write(`${pkg.version}\n`);
    return ExitCodes.OK;
  }
  const entry = commands[name];
  if (!entry) {
    ctx.stderr.write(`dropkey: unknown command "${name}".\n\n${usage()}`);
    return ExitCodes.USAGE;
  }
  try {
    const command = (await entry.load()).default;
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
