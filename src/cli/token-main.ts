// `dropkey token` on its own, built as one CommonJS file (dist/cli/token.cjs) that bin.ts loads for the hot path:
// no ES module loader, no command table, only what printing a stored token needs (the refresh path is bundled in
// but initialised only when a refresh is due). Same command, same errors and exit codes as through main.ts.
import command from './commands/token.js';
import { commandContext, processContext } from './process.js';
import { ExitCodes, reportError } from './report.js';

const ctx = processContext();
command.run(commandContext(ctx, process.argv.slice(3))).then(
  (code) => {
    process.exitCode = typeof code === 'number' ? code : ExitCodes.OK;
  },
  (err: unknown) => {
    process.exitCode = reportError(err, ctx);
  },
);
