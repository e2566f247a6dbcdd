import type { Command } from './context.js';

/**
 * The command table. Each command is imported only when it runs, so `dropkey token` loads
 * nothing it does not use (start-up time is a measured target, see bench/).
 */
export const commands: Record<string, { summary: string; load: () => Promise<{ default: Command }> }> = {
  emulator: { summary: 'Run a local Dropbox emulator (OAuth, files, team routes)', load: () => import('./commands/emulator.js') },
};
