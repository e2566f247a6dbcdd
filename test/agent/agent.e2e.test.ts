/**
 * `dropkey agent` as users run it: the built CLI as child processes against the emulator (clocks moved in step
 * through FAKE_CLOCK_OFFSET_MS, see test/cli/fake-clock.mjs), and fed by an in-process `dropkey serve`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, existsSync, watch, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import ini from 'ini';
import { parse as parseYaml } from 'yaml';
import { parseDotenv } from '../../src/formats/dotenv.js';
import { run } from '../../src/cli/index.js';
import { readConfig } from '../../src/config.js';
import { startServer } from '../../src/server/main.js';
import { openStore } from '../../src/store/index.js';
import { assertNoSecrets, CliEnv, collect, waitForOutput } from '../cli/cli-helpers.js';

let t: CliEnv;
before(async () => {
  t = await CliEnv.create();
});
after(async () => {
  await t?.close();
});

function dirIn(name: string): string {
  const d = join(t.home, 'out', name);
  mkdirSync(d, { recursive: true });
  return d;
}

async function storedToken(connection: string): Promise<string> {
  const s = await openStore({ home: t.home });
  try {
    return (await s.getConnection(connection))!.accessToken!;
  } finally {
    await s.close();
  }
}

async function accepted(token: string): Promise<boolean> {
  return (await t.emu.rpc('users/get_current_account', undefined, token)).status === 200;
}

async function tokenCalls(): Promise<number> {
  return (await t.emu.control.requests()).filter((r) => r.path.split('?')[0] === '/oauth2/token').length;
}

test('a missing output directory: exit status 2 and the path in the message, nothing started', async () => {
  await t.connect('missing');
  const path = join(t.home, 'no', 'such', 'dir', 'token');
  const r = await t.run(['agent', '--connection', 'missing', '--output', `token:${path}`]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`the directory ${join(t.home, 'no', 'such', 'dir')} does not exist`));
  const bad = await t.run(['agent', '--connection', 'missing', '--output', 'yaml:/tmp/x']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--output "yaml:\/tmp\/x" must be FORMAT:PATH/);
  const mixed = await t.run(['agent', '--config', '/nonexistent.yaml', '--connection', 'x']);
  assert.equal(mixed.code, 2);
  assert.match(mixed.stderr, /--connection cannot be combined with --config/);
});

test('--check validates, prints what would be written where, writes nothing; a damaged file is found', async () => {
  await t.connect('check');
  const d = dirIn('check');
  writeFileSync(join(d, 'connections.json'), '{"postgres_default": {"conn_type": "postgres"}}\n', { mode: 0o640 });
  const config = join(d, 'agent.yaml');
  writeFileSync(
    config,
    `connection: check\nmargin: 45m\noutputs:\n  - format: airflow\n    path: connections.json\n    field: login\n  - format: env\n    path: ${join(d, 'backup.env')}\n    variables: [DPBX_ACCESS_TOKEN]\n    command: systemctl reload backup\n`,
  );
  const before = readFileSync(join(d, 'connections.json'), 'utf8');
  const r = await t.run(['agent', '--config', config, '--check']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`Configuration: ${config} is valid`));
  assert.match(r.stdout, /Tokens from: the local store/);
  assert.match(r.stdout, /less than 45m left/);
  assert.match(r.stdout, /Connection "check": active/);
  assert.match(r.stdout, new RegExp(`${join(d, 'connections.json')}\\n    airflow: Airflow connection "check" \\(json form; token in login\\); mode 0640 \\(kept\\); exists, will be updated`));
  assert.match(r.stdout, /env: dotenv DPBX_ACCESS_TOKEN and DROPBOX_ACCESS_TOKEN_EXPIRES_AT; mode 0600 for a new file; will be created/);
  assert.match(r.stdout, /then runs: \/bin\/sh -c systemctl reload backup/);
  assert.match(r.stdout, /Nothing was written\./);
  assert.equal(readFileSync(join(d, 'connections.json'), 'utf8'), before);
  assert.equal(existsSync(join(d, 'backup.env')), false);
  assert.doesNotMatch(r.stdout + r.stderr, /sl\./);

  writeFileSync(join(d, 'connections.json'), '{"postgres_default": ');
  const damaged = await t.run(['agent', '--config', config, '--check']);
  assert.equal(damaged.code, 1, damaged.stderr);
  assert.match(damaged.stdout, /PROBLEM: .*connections/i);
  assert.match(damaged.stderr, /would not work as configured/);

  writeFileSync(config, 'outputs:\n  - format: token\n    path: t\n    colour: red\n  - format: json\n');
  const invalid = await t.run(['agent', '--config', config, '--check']);
  assert.equal(invalid.code, 2);
  assert.match(invalid.stderr, /outputs\[0\]: unknown option "colour"/);
  assert.match(invalid.stderr, /outputs\[1\]\.path/);
});

test('--once writes every output (formats parse, token accepted) and exits 0; post-write command runs', async () => {
  const { app, token: g } = await t.connect('once');
  const d = dirIn('once');
  writeFileSync(join(d, 'rclone.conf'), '[s3]\ntype = s3\n');
  const r = await t.run([
    'agent', '--once', '--connection', 'once',
    '--output', `token:${join(d, 'token')}`,
    '--output', `json:${join(d, 'token.json')}`,
    '--output', `rclone:${join(d, 'rclone.conf')}`,
    '--output', `airflow:${join(d, 'connections.yaml')}`,
    '--command', `echo "$DROPKEY_OUTPUT_PATH" >> ${join(d, 'commands.log')}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const token = readFileSync(join(d, 'token'), 'utf8').trim();
  assert.ok(await accepted(token));
  assert.equal(JSON.parse(readFileSync(join(d, 'token.json'), 'utf8')).access_token, token);
  const rc = ini.parse(readFileSync(join(d, 'rclone.conf'), 'utf8'));
  assert.equal(rc['s3'].type, 's3');
  assert.equal(JSON.parse(rc['once'].token).access_token, token);
  assert.equal(parseYaml(readFileSync(join(d, 'connections.yaml'), 'utf8')).once.password, token);
  assert.deepEqual(readFileSync(join(d, 'commands.log'), 'utf8').trim().split('\n').sort(), ['connections.yaml', 'rclone.conf', 'token', 'token.json'].map((f) => join(d, f)).sort());
  for (const f of ['token', 'token.json', 'rclone.conf', 'connections.yaml']) assertNoSecrets(readFileSync(join(d, f), 'utf8'), [g.refresh_token, app.secret], f);
  // JSON logs on a pipe, one object per line, no token in them.
  const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.msg === `wrote ${join(d, 'token')}` && l.connection === 'once'));
  assert.ok(!r.stderr.includes(token));
});

test('SIGHUP reloads the configuration (a new output appears, a bad file is refused and the old one kept); SIGTERM exits 0', async () => {
  await t.connect('hup');
  const d = dirIn('hup');
  const config = join(d, 'agent.yaml');
  writeFileSync(config, `connection: hup\nhealth:\n  file: ${join(d, 'healthy')}\n  listen: 127.0.0.1:0\noutputs:\n  - format: token\n    path: a\n`);
  const child = t.spawn(['agent', '--config', config]);
  child.stdin.end();
  const done = collect(child);
  // Both waiters from the start: the two lines may arrive in one chunk.
  const listening = waitForOutput(child.stderr, /health endpoint listening on (http:\/\/127\.0\.0\.1:\d+\/healthz)/);
  await waitForOutput(child.stderr, /"msg":"ready: every output is written"/);
  const healthUrl = (await listening)[1]!;
  assert.ok(existsSync(join(d, 'healthy')), 'the health file is there once every output is written');
  assert.equal(JSON.parse(readFileSync(join(d, 'healthy'), 'utf8')).ok, true);
  const health = await fetch(healthUrl);
  assert.equal(health.status, 200);
  const body = await health.json();
  assert.equal(body.ok, true);
  assert.deepEqual(body.outputs.map((o: { path: string; ok: boolean }) => [o.path, o.ok]), [[join(d, 'a'), true]]);
  assert.doesNotMatch(JSON.stringify(body), /sl\./, 'the health answer holds no token');

  writeFileSync(config, `connection: hup\noutputs:\n  - format: token\n    path: a\n  - format: nonsense\n`);
  const refused = waitForOutput(child.stderr, /SIGHUP: the new configuration was not applied/);
  child.kill('SIGHUP');
  await refused;
  writeFileSync(config, `connection: hup\noutputs:\n  - format: token\n    path: a\n  - format: env\n    path: b.env\n    variables: [DPBX_ACCESS_TOKEN]\n`);
  const reloaded = waitForOutput(child.stderr, /"msg":"wrote [^"]*\/b\.env"/);
  child.kill('SIGHUP');
  await reloaded;
  assert.equal(parseDotenv(readFileSync(join(d, 'b.env'), 'utf8'))['DPBX_ACCESS_TOKEN'], readFileSync(join(d, 'a'), 'utf8').trim());
  child.kill('SIGTERM');
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /"msg":"agent stopped"/);
});

test('SIGTERM while an output is being written (its post-write command running): the agent waits for it, then exits 0', async () => {
  await t.connect('term');
  const d = dirIn('term');
  // The command blocks on a FIFO until the test lets it go: the agent is caught mid-write, deterministically.
  const gate = join(d, 'gate');
  execFileSync('mkfifo', [gate]);
  const config = join(d, 'agent.yaml');
  writeFileSync(config, `connection: term\noutputs:\n  - format: token\n    path: a\n    command: "cd ${d} && touch started && read x < gate && touch finished"\n`);
  const watcher = watch(d);
  const started = new Promise<void>((resolve) => watcher.on('change', (_e, f) => String(f) === 'started' && resolve()));
  const child = t.spawn(['agent', '--config', config]);
  child.stdin.end();
  const done = collect(child);
  const stopping = waitForOutput(child.stderr, /"msg":"stopping: finishing the writes in progress"/);
  try {
    await Promise.race([started, done.then((x) => assert.fail(`the agent exited before its command started: ${x.stderr}`))]);
    child.kill('SIGTERM');
    await stopping;
    // The agent has seen the signal and is waiting: still running, the command not finished.
    assert.equal(child.exitCode, null, 'the agent must not exit while its write is in progress');
    assert.ok(!existsSync(join(d, 'finished')));
  } finally {
    watcher.close();
    // Lets the command go (also when an assertion failed, so that nothing is left blocked on the FIFO).
    if (existsSync(join(d, 'started'))) writeFileSync(gate, 'go\n');
    else child.kill('SIGKILL');
  }
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(d, 'finished')), 'the post-write command ran to its end');
  assert.match(readFileSync(join(d, 'a'), 'utf8'), /^sl\.[A-Za-z0-9._-]+\n$/, 'the output is complete');
  assert.ok(await accepted(readFileSync(join(d, 'a'), 'utf8').trim()));
  // In that order: the command's end is waited for before the agent calls itself stopped.
  const ran = r.stderr.indexOf('"msg":"command after write succeeded"');
  const stoppedAt = r.stderr.indexOf('"msg":"agent stopped"');
  assert.ok(ran >= 0 && stoppedAt > ran, r.stderr);
});

test('kill -9 during writes, 20 times: every output holds the previous or the new complete content, mode kept', async (t2) => {
  await t.connect('k9');
  const d = dirIn('k9');
  const outputs: Array<{ file: string; format: string; read: (text: string) => string }> = [];
  for (let i = 0; i < 20; i++) {
    outputs.push({ file: `t${i}`, format: 'token', read: (s) => (/^sl\.[A-Za-z0-9._-]+\n$/.test(s) ? s.trim() : assert.fail(`not a token file: ${s}`)) });
    outputs.push({ file: `j${i}.json`, format: 'json', read: (s) => JSON.parse(s).access_token });
    outputs.push({ file: `e${i}.env`, format: 'env', read: (s) => parseDotenv(s)['DROPBOX_ACCESS_TOKEN']! });
  }
  outputs.push({ file: 'connections.json', format: 'airflow', read: (s) => JSON.parse(s).k9.password });
  const config = join(d, 'agent.yaml');
  writeFileSync(config, `connection: k9\noutputs:\n${outputs.map((o) => `  - format: ${o.format}\n    path: ${o.file}\n`).join('')}`);
  // Start from files the agent wrote, then give them a mode of their own: it must be kept across the kills.
  const first = await t.run(['agent', '--config', config, '--once']);
  assert.equal(first.code, 0, first.stderr);
  for (const o of outputs) chmodSync(join(d, o.file), 0o640);

  let mixed = 0;
  let untouched = 0;
  let complete = 0;
  for (let round = 0; round < 20; round++) {
    const previous = new Map(outputs.map((o) => [o.file, readFileSync(join(d, o.file), 'utf8')]));
    // A new token lifetime each round, so the agent refreshes and rewrites everything at start.
    await t.advanceClock(4 * 3600 + 60);
    // Kill at the first rename into the directory (inotify tells at once), so the kill lands among the 61
    // writes; every fifth round a little later, when they may all be done.
    const watcher = watch(d);
    const firstRename = new Promise<void>((resolve) => watcher.on('change', (_e, f) => String(f).includes('.dropkey-') || resolve()));
    const child = t.spawn(['agent', '--config', config]);
    child.stdin.end();
    const exited = once(child, 'exit');
    await Promise.race([firstRename, exited]);
    watcher.close();
    if (round % 5 === 4) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    const fresh = await storedToken('k9');
    let changed = 0;
    for (const o of outputs) {
      const p = join(d, o.file);
      const text = readFileSync(p, 'utf8');
      assert.equal(statSync(p).mode & 0o777, 0o640, `${o.file} kept its mode (round ${round})`);
      if (text === previous.get(o.file)) continue;
      // Not the previous content: then it must be the complete new one, holding the new token.
      assert.equal(o.read(text), fresh, `${o.file} is complete and holds the new token (round ${round})`);
      changed++;
    }
    if (changed === 0) untouched++;
    else if (changed === outputs.length) complete++;
    else mixed++;
  }
  t2.diagnostic(`kills: ${mixed} in the middle of the writes, ${complete} after all of them, ${untouched} before the first rename`);
  assert.ok(mixed >= 5, `at least a quarter of the kills must land between two writes (got ${mixed})`);
  // Temporary files of killed agents are cleaned up by the next start.
  const last = await t.run(['agent', '--config', config, '--once']);
  assert.equal(last.code, 0, last.stderr);
  assert.deepEqual(readdirSync(d).filter((f) => f.includes('.dropkey-')), []);
  for (const o of outputs) assert.ok(await accepted(o.read(readFileSync(join(d, o.file), 'utf8'))));
});

test('two agents and a CLI on one store across an expiry: exactly one refresh at Dropbox', async () => {
  await t.connect('shared');
  const d1 = dirIn('shared1');
  const d2 = dirIn('shared2');
  const before = await storedToken('shared');
  // 20 minutes before expiry: inside both agents' 30-minute margin, so both want a new token at start.
  await t.advanceClock(4 * 3600 - 20 * 60);
  await t.emu.control.clearRequests();
  const a = t.spawn(['agent', '--connection', 'shared', '--output', `token:${join(d1, 'token')}`]);
  const b = t.spawn(['agent', '--connection', 'shared', '--output', `json:${join(d2, 'token.json')}`]);
  a.stdin.end();
  b.stdin.end();
  const aDone = collect(a);
  const bDone = collect(b);
  await Promise.all([waitForOutput(a.stderr, /"msg":"wrote /), waitForOutput(b.stderr, /"msg":"wrote /)]);
  const token = readFileSync(join(d1, 'token'), 'utf8').trim();
  assert.notEqual(token, before);
  assert.equal(JSON.parse(readFileSync(join(d2, 'token.json'), 'utf8')).access_token, token);
  const cli = await t.run(['token', '--connection', 'shared']);
  assert.equal(cli.stdout.trim(), token, 'the CLI gets the token the agents got');
  // Past the old token's expiry: still the same token for everyone, no new refresh.
  await t.advanceClock(30 * 60);
  const later = await t.run(['token', '--connection', 'shared']);
  assert.equal(later.stdout.trim(), token);
  assert.ok(await accepted(token));
  assert.equal(await tokenCalls(), 1, 'exactly one refresh');
  a.kill('SIGTERM');
  b.kill('SIGINT');
  assert.equal((await aDone).code, 0);
  assert.equal((await bDone).code, 0);
});

test('fed by dropkey serve: valid outputs, and the agent machine holds no refresh token or app secret', async () => {
  const { app, token: g } = await t.connect('served');
  // The server side: the store with the connection, an API key, `dropkey serve` on a real port.
  const serverEnv = { DROPKEY_HOME: t.home, DROPKEY_DROPBOX_URL: t.emu.url, DROPKEY_LOG_LEVEL: 'warn' };
  const out = new PassThrough();
  let key = '';
  out.on('data', (x) => (key += x));
  const code = await run(['apikey', 'create', '--name', 'agent', '--permission', 'token:read', '--connection', 'served'], {
    env: serverEnv,
    cwd: t.home,
    stdin: new PassThrough(),
    stdout: out,
    stderr: new PassThrough(),
    signal: new AbortController().signal,
  });
  assert.equal(code, 0);
  const stop = new AbortController();
  const server = await startServer({ config: await readConfig(serverEnv), port: 0, stdout: new PassThrough(), logStream: new PassThrough(), signal: stop.signal });
  try {
    // The agent's machine: its own empty home, the key in a file, nothing else.
    const machine = mkdtempSync(join(tmpdir(), 'dropkey-agent-machine-'));
    try {
      writeFileSync(join(machine, 'api-key'), `${key.trim()}\n`, { mode: 0o600 });
      mkdirSync(join(machine, 'files'));
      const env = { DROPKEY_HOME: join(machine, 'home') };
      const args = [
        'agent', '--connection', 'served', '--serve-url', server.url, '--api-key-file', join(machine, 'api-key'),
        '--output', `airflow:${join(machine, 'files', 'connections.json')}`, '--field', 'login',
        '--output', `rclone:${join(machine, 'files', 'rclone.conf')}`,
        '--output', `json:${join(machine, 'files', 'token.json')}`,
      ];
      const r = await t.run([...args, '--once'], { env });
      assert.equal(r.code, 0, r.stderr);
      const token = JSON.parse(readFileSync(join(machine, 'files', 'token.json'), 'utf8')).access_token;
      assert.ok(await accepted(token));
      assert.equal(JSON.parse(readFileSync(join(machine, 'files', 'connections.json'), 'utf8')).served.login, token);
      assert.equal(JSON.parse(ini.parse(readFileSync(join(machine, 'files', 'rclone.conf'), 'utf8'))['served'].token).access_token, token);
      assert.equal(existsSync(join(machine, 'home')), false, 'the agent never opened a local store');
      for (const f of readdirSync(join(machine, 'files'))) {
        assertNoSecrets(readFileSync(join(machine, 'files', f), 'utf8'), [g.refresh_token, app.secret], f);
      }
      // Every file the agent's machine holds (the API key file, the outputs, anything else written there).
      const everyFile = readdirSync(machine, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
      assert.ok(everyFile.length >= 4, 'the API key file and the three outputs');
      for (const e of everyFile) assertNoSecrets(readFileSync(join(e.parentPath, e.name), 'utf8'), [g.refresh_token, app.secret], join(e.parentPath, e.name));
      assertNoSecrets(r.stderr, [g.refresh_token, app.secret, token, key.trim()], 'the agent log');

      // A wrong key: one clear error naming the file, exit 1 for --once.
      writeFileSync(join(machine, 'api-key'), 'dk_wrong\n');
      const refused = await t.run([...args, '--once'], { env });
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, new RegExp(`refused the API key from ${join(machine, 'api-key')}`));
      // The token API refuses a margin a token cannot have.
      const tooLong = await fetch(`${server.url}/api/v1/connections/served/token?min_valid=20000`, { headers: { Authorization: `Bearer ${key.trim()}` } });
      assert.equal(tooLong.status, 400);
    } finally {
      rmSync(machine, { recursive: true, force: true });
    }
  } finally {
    stop.abort();
    await server.done;
  }
});
