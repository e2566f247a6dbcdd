// Runs every benchmark one after the other (they would disturb each other in parallel) and prints each one's JSON
// summary line at the end. `npm run bench` builds first. Pass names to run a subset: node bench/run.mjs token-startup
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const all = ['token-startup', 'serve-token', 'token-many', 'serve-proxy', 'emulator-transfer', 'store-compare', 'agent'];
const wanted = process.argv.slice(2);
const names = wanted.length ? all.filter((n) => wanted.includes(n)) : all;
const summaries = [];
let failed = 0;
for (const name of names) {
  const script = fileURLToPath(new URL(`./${name}.mjs`, import.meta.url));
  process.stdout.write(`\n== ${name}\n`);
  let last = '';
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (d) => {
      process.stdout.write(d);
      const lines = String(d).trim().split('\n');
      last = lines[lines.length - 1] ?? last;
    });
    child.on('exit', (c) => resolve(c ?? 1));
  });
  // A benchmark exits 1 when it measured fine but missed its goal: its JSON line says so ("ok"/"met": false).
  const measured = last.startsWith('{');
  if (code !== 0) failed++;
  summaries.push(measured ? last : JSON.stringify({ bench: name, error: `exited with ${code} without a summary` }));
}
process.stdout.write(`\n== summary\n${summaries.join('\n')}\n`);
process.exitCode = failed ? 1 : 0;
