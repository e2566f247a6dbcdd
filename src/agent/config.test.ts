import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { checkPaths, normalizeConfig, parseDuration, readConfigFile } from './config.js';

const ctx = { baseDir: '/srv/agent', home: '/home/ann', defaultConnection: 'default' };

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err: any) {
    assert.equal(err.code, 'DROPKEY_BAD_INPUT');
    return err.details.problems;
  }
  assert.fail('expected a configuration error');
}

test('durations and defaults', () => {
  assert.equal(parseDuration('30m'), 1800);
  assert.equal(parseDuration('1h30m'), 5400);
  assert.equal(parseDuration('90s'), 90);
  assert.equal(parseDuration(600), 600);
  assert.equal(parseDuration('soon'), null);
  const c = normalizeConfig({ outputs: [{ format: 'token', path: 'tok' }] }, ctx, null);
  assert.equal(c.marginSeconds, 1800);
  assert.deepEqual(c.source, { kind: 'store' });
  assert.equal(c.outputs[0]!.path, '/srv/agent/tok');
  assert.equal(c.outputs[0]!.connection, 'default');
  assert.equal(c.outputs[0]!.mode, null);
});

test('each format gets its defaults; ~ and relative paths resolve; a string command runs through sh', () => {
  const c = normalizeConfig(
    {
      connection: 'backup',
      margin: '45m',
      outputs: [
        { format: 'env', path: '~/backup.env', variables: ['DPBX_ACCESS_TOKEN'], command: 'systemctl reload backup' },
        { format: 'rclone', path: '/etc/rclone.conf' },
        { format: 'airflow', path: 'files/connections.yaml', field: 'login', mode: '0640' },
        { format: 'airflow', path: '/x/c.env', connection: 'default', conn_id: 'dbx', command: ['kill', '-HUP', '1'] },
        { format: 'json', path: '/x/t.json', mode: 640 },
      ],
    },
    ctx,
    null,
  );
  assert.equal(c.marginSeconds, 2700);
  const [env, rclone, airflow, airflowEnv, json] = c.outputs as any[];
  assert.deepEqual(env.env, { variables: ['DPBX_ACCESS_TOKEN'], expiryVariable: 'DROPBOX_ACCESS_TOKEN_EXPIRES_AT' });
  assert.equal(env.path, '/home/ann/backup.env');
  assert.deepEqual(env.command, ['/bin/sh', '-c', 'systemctl reload backup']);
  assert.deepEqual(rclone.rclone, { remote: 'backup', includeRefreshToken: false });
  assert.deepEqual(airflow.airflow, { connId: 'backup', form: 'yaml', field: 'login' });
  assert.equal(airflow.path, '/srv/agent/files/connections.yaml');
  assert.equal(airflow.mode, 0o640);
  assert.deepEqual(airflowEnv.airflow, { connId: 'dbx', form: 'env', field: 'password' });
  assert.deepEqual(airflowEnv.command, ['kill', '-HUP', '1']);
  assert.equal(json.mode, 0o640, 'YAML reads 0640 as the number 640: octal digits are taken as octal');
});

test('every problem is reported at once, each with where it is', () => {
  const problems = problemsOf(() =>
    normalizeConfig(
      {
        margin: '3h',
        source: { kind: 'serve', url: 'ftp://x', api_key_file: 'key' },
        outputs: [
          { format: 'token', path: '/a/t', colour: 'red' },
          { format: 'yaml', path: '/a/y' },
          { format: 'env', path: '/a/e', variables: ['1BAD'] },
          { format: 'json', path: '/a/j', mode: '0999' },
        ],
        health: { listen: '0.0.0.0:80' },
      },
      ctx,
      '/etc/agent.yaml',
    ),
  );
  const text = problems.join('\n');
  assert.match(text, /outputs\[0\]: unknown option "colour"/);
  assert.match(text, /outputs\[1\]\.format: missing or unknown format \(one of token, json, env, rclone, airflow\)/);
  assert.match(text, /outputs\[2\]\.variables\[0\]/);
  assert.match(text, /outputs\[3\]\.mode: "0999" is not a file mode/);
  assert.ok(problems.length >= 4, text);
});

test('rules after the schema: margin bounds, serve URL, shared files, loopback health, refresh tokens never through serve', () => {
  const problems = problemsOf(() =>
    normalizeConfig(
      {
        margin: '3h',
        source: { kind: 'serve', url: 'https://dropkey.example.com', api_key_file: '/k' },
        outputs: [
          { format: 'token', path: '/a/same' },
          { format: 'json', path: '/a/same' },
          { format: 'rclone', path: '/a/rc', remote: 'r', include_refresh_token: true },
          { format: 'airflow', path: '/a/conn.txt' },
          { format: 'airflow', path: '/a/c.json', conn_id: 'x' },
          { format: 'airflow', path: '/a/c.json', conn_id: 'x', connection: 'other' },
        ],
        health: { listen: '10.0.0.1:8080', file: '/a/same' },
      },
      ctx,
      null,
    ),
  );
  const text = problems.join('\n');
  assert.match(text, /margin: must be between 5m and 2h/);
  assert.match(text, /outputs\[0\], outputs\[1\] all write \/a\/same/);
  assert.match(text, /include_refresh_token: a dropkey serve never hands out refresh tokens/);
  assert.match(text, /outputs\[3\]\.form: say which Airflow file form/);
  assert.match(text, /outputs\[4\], outputs\[5\] write the same section of \/a\/c\.json/);
  assert.match(text, /health\.listen: "10\.0\.0\.1:8080" must be a loopback address/);
  assert.match(text, /health\.file: \/a\/same is also an output/);
  assert.equal(problems.length, 7, text);
  // Two Dropbox remotes in one rclone.conf, or two connections in one Airflow file, are fine.
  const ok = normalizeConfig(
    { outputs: [{ format: 'rclone', path: '/a/rc', remote: 'one' }, { format: 'rclone', path: '/a/rc', remote: 'two', connection: 'b' }] },
    ctx,
    null,
  );
  assert.equal(ok.outputs.length, 2);
});

test('YAML files: syntax errors with their line; the example of docs/agent.md parses', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-agent-config-'));
  try {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'outputs:\n  - format: token\n    path: [unclosed\n');
    await assert.rejects(readConfigFile(bad, { home: undefined, defaultConnection: 'default' }), (e: any) => /is not valid YAML/.test(e.message) && /line \d+/.test(e.message));
    await assert.rejects(readConfigFile(join(dir, 'missing.yaml'), { home: undefined, defaultConnection: 'default' }), /no such file/);
    const good = join(dir, 'agent.yaml');
    writeFileSync(
      good,
      [
        'source:',
        '  kind: serve',
        '  url: http://dropkey.dropkey.svc:8080',
        '  api_key_file: /var/run/secrets/dropkey/api-key',
        'margin: 30m',
        'outputs:',
        '  - connection: backup',
        '    format: airflow',
        '    path: /files/connections.json',
        '    field: login',
        '  - connection: backup',
        '    format: token',
        '    path: ./token',
        '    mode: "0640"',
        'health:',
        '  file: /run/dropkey/healthy',
        '  listen: 127.0.0.1:8787',
        '',
      ].join('\n'),
    );
    const c = await readConfigFile(good, { home: undefined, defaultConnection: 'default' });
    assert.deepEqual(c.source, { kind: 'serve', url: 'http://dropkey.dropkey.svc:8080', apiKeyFile: '/var/run/secrets/dropkey/api-key' });
    assert.equal(c.outputs[1]!.path, join(dir, 'token'), 'relative to the configuration file');
    assert.deepEqual(c.health, { file: '/run/dropkey/healthy', listen: { host: '127.0.0.1', port: 8787 } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('checkPaths: a missing or unwritable directory is named; an output that is a directory too', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-agent-paths-'));
  try {
    mkdirSync(join(dir, 'ro'));
    mkdirSync(join(dir, 'isdir'));
    chmodSync(join(dir, 'ro'), 0o500);
    const c = normalizeConfig(
      {
        outputs: [
          { format: 'token', path: join(dir, 'missing/token') },
          { format: 'token', path: join(dir, 'ro/token') },
          { format: 'token', path: join(dir, 'isdir') },
          { format: 'token', path: join(dir, 'fine') },
        ],
      },
      ctx,
      null,
    );
    const err: any = await checkPaths(c).then(
      () => null,
      (e) => e,
    );
    assert.ok(err, 'checkPaths must fail');
    const text = err.details.problems.join('\n');
    assert.match(text, new RegExp(`the directory ${join(dir, 'missing')} does not exist`));
    // root can write anywhere: the read-only case only shows for other users.
    if (process.getuid?.() !== 0) assert.match(text, new RegExp(`${join(dir, 'ro')} cannot be written`));
    else t.diagnostic('running as root: a 0500 directory is writable, so that case is not checked');
    assert.match(text, /isdir exists and is not a regular file/);
    assert.doesNotMatch(text, /fine/);
  } finally {
    chmodSync(join(dir, 'ro'), 0o700);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the configuration examples of docs/agent.md and the deployment guides are valid', async () => {
  const { readFileSync } = await import('node:fs');
  const { parseAllDocuments } = await import('yaml');
  const root = new URL('../../', import.meta.url);
  const blocks = (file: string): string[] => [...readFileSync(new URL(file, root), 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-agent-docs-'));
  try {
    const configs = [blocks('docs/agent.md')[0]!, blocks('docs/guides/systemd.md')[0]!];
    // The Kubernetes guide carries the agent's configuration inside a ConfigMap.
    const k8s = blocks('docs/guides/kubernetes-sidecar.md');
    for (const b of k8s) for (const d of parseAllDocuments(b)) assert.deepEqual(d.errors, [], b);
    const configMap = k8s.map((b) => parseYaml(b)).find((d) => d?.kind === 'ConfigMap');
    configs.push(configMap.data['agent.yaml']);
    for (const [i, text] of configs.entries()) {
      const file = join(dir, `example${i}.yaml`);
      writeFileSync(file, text);
      const c = await readConfigFile(file, { home: '/home/ann', defaultConnection: 'default' });
      assert.ok(c.outputs.length >= 2, `example ${i}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every agent configuration shown in the consumer guides (docs/consumers) is valid', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const docs = new URL('../../docs/consumers/', import.meta.url);
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-agent-consumers-'));
  const checked: string[] = [];
  try {
    for (const name of readdirSync(docs).filter((n) => n.endsWith('.md'))) {
      const text = readFileSync(new URL(name, docs), 'utf8');
      // Blocks inside list items are indented: the fence's indentation is taken off every line.
      for (const m of text.matchAll(/^( *)```yaml\n([\s\S]*?)^\1```/gm)) {
        const indent = m[1]!.length;
        const block = m[2]!.split('\n').map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length))).join('\n');
        const parsed: unknown = parseYaml(block);
        // Other YAML in these guides is the consumer's own file (an Airflow connections file, say), not ours.
        if (typeof parsed !== 'object' || parsed === null || !('outputs' in parsed)) continue;
        const where = `docs/consumers/${name}:${text.slice(0, m.index).split('\n').length}`;
        const file = join(dir, `${checked.length}.yaml`);
        writeFileSync(file, block);
        const c = await readConfigFile(file, { home: '/home/ann', defaultConnection: 'default' }).catch((err: Error) => assert.fail(`${where}: ${err.message}`));
        assert.ok(c.outputs.length >= 1, where);
        checked.push(where);
      }
    }
    // airflow.md, other-tools.md and rclone.md (two) show agent configurations today: a guide losing its example, or
    // the regular expression missing an indented block, shows up here.
    assert.ok(checked.length >= 4, `checked: ${checked.join(', ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
