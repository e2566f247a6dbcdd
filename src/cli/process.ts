import type { CommandContext } from './context.js';

/**
 * The command context of the real process: the one place (with server/main.ts) where the CLI reads process.*.
 * Ctrl-C or SIGTERM aborts `signal`; a second one exits at once with 130.
 *
 * process.stdin/stdout/stderr are getters that build stream objects (for a pipe, a net.Socket and the whole
 * streams stack) on first use, so they are passed on as getters too and only built when a command touches them:
 * `dropkey token` start-up is a measured target (bench/token-startup.mjs).
 */
export function processContext(): Omit<CommandContext, 'argv'> {
  const controller = new AbortController();
  let interrupted = 0;
  const traps = new Map<NodeJS.Signals, (sig: NodeJS.Signals) => void>();
  const onSignal = (sig: NodeJS.Signals): void => {
    const trap = traps.get(sig);
    if (trap) return trap(sig);
    interrupted++;
    if (interrupted > 1) process.exit(130);
    controller.abort(new Error(`interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const trapSignals = (signals: readonly NodeJS.Signals[], handler: (sig: NodeJS.Signals) => void): (() => void) => {
    const own = signals.filter((s) => !traps.has(s));
    for (const s of own) {
      traps.set(s, handler);
      if (s !== 'SIGINT' && s !== 'SIGTERM') process.on(s, onSignal);
    }
    return () => {
      for (const s of own) {
        traps.delete(s);
        if (s !== 'SIGINT' && s !== 'SIGTERM') process.off(s, onSignal);
      }
    };
  };
  return {
    trapSignals,
    env: process.env,
    cwd: process.cwd(),
    get stdin() {
      return process.stdin;
    },
    get stdout() {
      return process.stdout;
    },
    get stderr() {
      return process.stderr;
    },
    stdoutFd: 1,
    signal: controller.signal,
    // Installed only while a command listens: without a listener SIGHUP keeps its default (terminate).
    onHangup: (listener) => {
      process.on('SIGHUP', listener);
      return () => void process.off('SIGHUP', listener);
    },
  };
}

/** The context a command runs with: descriptors are copied, not values, so the stdio getters stay lazy. */
export function commandContext(ctx: Omit<CommandContext, 'argv'>, argv: string[]): CommandContext {
  return Object.defineProperties({}, { ...Object.getOwnPropertyDescriptors(ctx), argv: { value: argv, enumerable: true } }) as CommandContext;
}
