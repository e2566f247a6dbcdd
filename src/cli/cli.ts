import type { Command } from './context.js';

/**
 * The command table: names and loaders, in the order `dropkey --help` lists them. Everything else about a command
 * (its summary, usage and flags) lives in its module and is read from there. Each command is imported only when it
 * runs, so `dropkey token` loads nothing it does not use (start-up time is a measured target, see bench/).
 */
export const commands: Record<string, () => Promise<{ default: Command }>> = {
  demo: () => import('./commands/demo.js'),
  app: () => import('./commands/app.js'),
  login: () => import('./commands/login.js'),
  import: () => import('./commands/import.js'),
  token: () => import('./commands/token.js'),
  exec: () => import('./commands/exec.js'),
  agent: () => import('./commands/agent.js'),
  export: () => import('./commands/export.js'),
  list: () => import('./commands/list.js'),
  refresh: () => import('./commands/refresh.js'),
  revoke: () => import('./commands/revoke.js'),
  doctor: () => import('./commands/doctor.js'),
  serve: () => import('./commands/serve.js'),
  apikey: () => import('./commands/apikey.js'),
  link: () => import('./commands/link.js'),
  keys: () => import('./commands/keys.js'),
  emulator: () => import('./commands/emulator.js'),
};

/** The top-level help, from each command's own summary (only `--help` and usage errors load every command). */
export async function usage(): Promise<string> {
  const names = Object.keys(commands);
  const summaries = await Promise.all(names.map(async (n) => (await commands[n]!()).default.summary));
  const width = Math.max(...names.map((n) => n.length));
  const lines = names.map((n, i) => `  ${n.padEnd(width)}  ${summaries[i]}`);
  return `Usage: dropkey <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun "dropkey <command> --help" for a command's options.\n`;
}
