import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debugEnabled, nonEmpty, parseFlag, readConfig, type ConfigProblem } from './config.js';
import { isDropkeyError, type DropkeyError } from './errors.js';

const KEY = 'ab'.repeat(32);

async function problemsOf(env: Record<string, string | undefined>, options = {}): Promise<{ err: DropkeyError; problems: ConfigProblem[] }> {
  try {
    await readConfig(env, options);
  } catch (err) {
    assert.ok(isDropkeyError(err), String(err));
    assert.equal(err.code, 'DROPKEY_BAD_INPUT');
    return { err, problems: (err.details?.['problems'] ?? []) as ConfigProblem[] };
  }
  assert.fail('readConfig accepted a bad environment');
}

test('readConfig reports every bad variable at once, each with what it accepts and the fix, and never a secret', async () => {
  const home = mkdtempSync(join(tmpdir(), 'dropkey-config-'));
  try {
    const { err, problems } = await problemsOf({
      DROPKEY_HOME: home,
      DROPKEY_MASTER_KEY: 'sekrit-master-key',
      DROPKEY_DATABASE_URL: 'mysql://user:hunter2pw@db.example/dropkey',
      DROPKEY_DROPBOX_URL: 'notaurl',
      DROPKEY_DROPBOX_TOKEN_URL: 'ftp://h/t',
      DROPKEY_CONNECTION: 'bad name!',
      DROPKEY_PUBLIC_URL: 'http://dropkey.example.com',
      DROPKEY_LOG_LEVEL: 'loud',
      DROPKEY_JOBS: 'maybe',
      DROPKEY_GC_HEADROOM: 'sometimes',
      DROPKEY_DEBUG: 'perhaps',
    });
    assert.deepEqual(problems.map((p) => p.variable), [
      'DROPKEY_MASTER_KEY',
      'DROPKEY_DATABASE_URL',
      'DROPKEY_DROPBOX_URL',
      'DROPKEY_DROPBOX_TOKEN_URL',
      'DROPKEY_CONNECTION',
      'DROPKEY_PUBLIC_URL',
      'DROPKEY_LOG_LEVEL',
      'DROPKEY_JOBS',
      'DROPKEY_GC_HEADROOM',
      'DROPKEY_DEBUG',
    ]);
    assert.match(err.message, /^10 environment variables need fixing:/);
    for (const p of problems) assert.ok(err.message.includes(p.problem), p.variable);
    // Accepted values and the fix, per variable.
    assert.match(err.message, /DROPKEY_LOG_LEVEL="loud" is not a log level\n\s+accepted: trace, debug, info, warn, error, fatal, silent\n\s+fix: /);
    assert.match(err.message, /DROPKEY_JOBS="maybe" is neither on nor off\n\s+accepted: on, true, yes, 1 or off, false, no, 0\n\s+fix: set off to keep background jobs off/);
    assert.match(err.message, /not an http\(s\) URL: DROPKEY_DROPBOX_URL="notaurl"/);
    assert.match(err.message, /DROPKEY_DATABASE_URL uses "mysql:"[\s\S]*accepted: file:\/\/\/absolute/);
    assert.match(err.message, /dropkey keys generate/);
    assert.match(err.hint ?? '', /unset the variable/);
    // Secrets stay out: the master key and the database password.
    const all = `${err.message}\n${err.hint}\n${JSON.stringify(err.details)}`;
    assert.ok(!all.includes('sekrit-master-key'));
    assert.ok(!all.includes('hunter2pw'));
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test('one bad variable: its problem is the message, what it accepts and the fix are the hint', async () => {
  const { err } = await problemsOf({ DROPKEY_HOME: '/nonexistent/dropkey', DROPKEY_LOG_LEVEL: 'verbose' });
  assert.equal(err.message, 'DROPKEY_LOG_LEVEL="verbose" is not a log level.');
  assert.equal(err.hint, 'Accepted: trace, debug, info, warn, error, fatal, silent.\nSet one of those, or unset it for "info".');
});

test('on/off variables: false means off (never "on"), words are case-insensitive, unset keeps the default', async () => {
  const base = { DROPKEY_HOME: '/nonexistent/dropkey' };
  for (const v of ['off', 'false', 'FALSE', 'no', '0', ' Off ']) {
    const c = await readConfig({ ...base, DROPKEY_JOBS: v, DROPKEY_GC_HEADROOM: v });
    assert.equal(c.jobs, false, v);
    assert.equal(c.gcHeadroom, false, v);
  }
  for (const v of ['on', 'true', 'yes', '1', undefined, '', '  ']) {
    const c = await readConfig({ ...base, DROPKEY_JOBS: v, DROPKEY_GC_HEADROOM: v });
    assert.equal(c.jobs, true, String(v));
    assert.equal(c.gcHeadroom, true, String(v));
  }
  assert.equal(parseFlag('maybe'), undefined);
  assert.equal(debugEnabled({}), false);
  assert.equal(debugEnabled({ DROPKEY_DEBUG: '1' }), true);
  assert.equal(debugEnabled({ DROPKEY_DEBUG: '0' }), false);
  // The error reporter cannot fail: a value it does not understand turns debugging on.
  assert.equal(debugEnabled({ DROPKEY_DEBUG: 'verbose' }), true);
});

test('defaults, and the one rule for every variable: blank is unset, values are trimmed', async () => {
  const c = await readConfig({ DROPKEY_HOME: ' /nonexistent/dropkey ', DROPKEY_MASTER_KEY: ` ${KEY} `, DROPKEY_LOG_LEVEL: ' WARN ', DROPKEY_CONNECTION: '  ', DROPKEY_DATABASE_URL: ' ', DROPKEY_PUBLIC_URL: 'https://dropkey.example.com/' });
  assert.equal(c.home, '/nonexistent/dropkey');
  assert.equal(c.masterKey, KEY);
  assert.equal(c.logLevel, 'warn');
  assert.equal(c.connection, 'default');
  assert.equal(c.databaseUrl, undefined);
  assert.deepEqual(c.database, { kind: 'sqlite', path: '/nonexistent/dropkey/dropkey.db' });
  assert.equal(c.publicUrl, 'https://dropkey.example.com');
  assert.equal(c.urls.api, 'https://api.dropboxapi.com');
  assert.equal(c.debug, false);
  assert.equal(nonEmpty(' x '), 'x');
  assert.equal(nonEmpty(' \t'), undefined);
  const pg = await readConfig({ DROPKEY_HOME: '/nonexistent/dropkey', DROPKEY_DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db?schema=s1' });
  assert.deepEqual(pg.database, { kind: 'postgres', connectionString: 'postgres://u:p@127.0.0.1:5432/db', schema: 's1' });
  // Relative DROPKEY_HOME values resolve against the given working directory.
  assert.equal((await readConfig({ DROPKEY_HOME: 'data' }, { cwd: '/nonexistent/work' })).home, '/nonexistent/work/data');
});

test('DROPKEY_HOME that is a file, or under a file, names the path and the problem', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-config-'));
  try {
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'x');
    const isFile = await problemsOf({ DROPKEY_HOME: file });
    assert.equal(isFile.err.message, `the data directory ${file} is a file, not a directory.`);
    assert.match(isFile.err.hint ?? '', /Point DROPKEY_HOME at such a directory/);

    const under = join(file, 'a', 'b');
    const underFile = await problemsOf({ DROPKEY_HOME: under });
    assert.equal(underFile.err.message, `the data directory ${under} is under ${file}, which is a file, not a directory.`);

    // A missing directory is fine (the store creates it), and so is an existing one.
    await readConfig({ DROPKEY_HOME: join(dir, 'new', 'home') });
    mkdirSync(join(dir, 'home'));
    await readConfig({ DROPKEY_HOME: join(dir, 'home') });

    // The data directory is not used with a master key and PostgreSQL: then it is not checked.
    await readConfig({ DROPKEY_HOME: file, DROPKEY_MASTER_KEY: KEY, DROPKEY_DATABASE_URL: 'postgres://127.0.0.1/db' });
    // ... but it is with SQLite, or with the key file.
    await problemsOf({ DROPKEY_HOME: file, DROPKEY_DATABASE_URL: 'postgres://127.0.0.1/db' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('DROPKEY_HOME this user cannot read or write (the access check, injected: root passes every permission check)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-config-'));
  try {
    const denied = (path: string): never => {
      throw Object.assign(new Error(`EACCES: permission denied, access '${path}'`), { code: 'EACCES' });
    };
    const { err } = await problemsOf({ DROPKEY_HOME: dir }, { fs: { statSync, accessSync: denied } });
    assert.equal(err.message, `the data directory ${dir} cannot be read and written by this user (EACCES).`);
    const unreachable = await problemsOf({ DROPKEY_HOME: join(dir, 'x') }, { fs: { statSync: denied, accessSync: denied } });
    assert.match(unreachable.err.message, /cannot be reached: permission denied \(EACCES\) on a directory above it/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(
  'DROPKEY_HOME with mode 000, through the real file system',
  { skip: process.getuid?.() === 0 ? 'running as root: every permission check passes, so a mode-000 directory is readable (the injected test above covers the message)' : false },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dropkey-config-'));
    try {
      chmodSync(dir, 0o000);
      const { err } = await problemsOf({ DROPKEY_HOME: dir });
      assert.match(err.message, /cannot be read and written by this user \(EACCES\)/);
    } finally {
      chmodSync(dir, 0o700);
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('audit retention and refresh concurrency: whole numbers in range, unset keeps the server default, bad values say what to set', async () => {
  const base = { DROPKEY_HOME: '/nonexistent/dropkey' };
  const unset = await readConfig(base);
  assert.deepEqual([unset.auditRetentionMs, unset.refreshConcurrency], [undefined, undefined]);
  const set = await readConfig({ ...base, DROPKEY_AUDIT_RETENTION_DAYS: ' 365 ', DROPKEY_REFRESH_CONCURRENCY: '64' });
  assert.deepEqual([set.auditRetentionMs, set.refreshConcurrency], [365 * 86_400_000, 64]);
  const { err, problems } = await problemsOf({ ...base, DROPKEY_AUDIT_RETENTION_DAYS: '0', DROPKEY_REFRESH_CONCURRENCY: '1000' });
  assert.deepEqual(problems.map((p) => p.variable), ['DROPKEY_AUDIT_RETENTION_DAYS', 'DROPKEY_REFRESH_CONCURRENCY']);
  assert.match(err.message, /DROPKEY_AUDIT_RETENTION_DAYS="0" is not a whole number from 1 to 36500\n\s+accepted: a whole number from 1 to 36500\n\s+fix: e\.g\. DROPKEY_AUDIT_RETENTION_DAYS=365, or unset it for the default \(90 days\)/);
  assert.match(err.message, /DROPKEY_REFRESH_CONCURRENCY="1000" is not a whole number from 1 to 256/);
  const forever = await problemsOf({ ...base, DROPKEY_AUDIT_RETENTION_DAYS: 'forever' });
  assert.equal(forever.problems[0]?.variable, 'DROPKEY_AUDIT_RETENTION_DAYS');
});
