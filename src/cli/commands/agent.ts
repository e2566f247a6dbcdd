/**
 * `dropkey agent`: keeps token files fresh where other programs read them (docs/agent.md). The engine is
 * src/agent/agent.ts; this command reads the configuration (a YAML file or the one-output flags), checks the
 * output directories (exit 2 naming the path), opens the token source, and runs until SIGTERM/SIGINT (exit 0),
 * reloading on SIGHUP.
 */
import type { Command, CommandContext } from '../context.js';
import { loadConfig, parseOptions, usageError, type CliConfig } from '../config.js';
import { DropkeyError } from '../../errors.js';
import { adviceLines } from '../fix.js';
import { checkPaths, normalizeConfig, OUTPUT_FORMATS, readConfigFile, type AgentConfig } from '../../agent/config.js';
import type { AgentLogger, LogFormat } from '../../agent/log.js';
import type { TokenSource } from '../../agent/sources.js';

const usage = `Usage: dropkey agent --config FILE [--once | --check]
       dropkey agent --connection NAME --output FORMAT:PATH [--output FORMAT:PATH ...] [options]

Keeps a valid access token in the files other programs read, rewriting each one before its token has less than
the margin left (default 30m of the 4h lifetime). Runs in the foreground (systemd, Docker, a Kubernetes
sidecar) until SIGTERM or Ctrl-C (exit 0); SIGHUP reloads the configuration file. See docs/agent.md.

  dropkey agent --connection backup --output airflow:/files/connections.json --field login
  dropkey agent --connection backup --output env:/run/backup.env --var DPBX_ACCESS_TOKEN
  dropkey agent --config /etc/dropkey/agent.yaml

Formats: token (the bare token), json, env (dotenv), rclone (a remote's token in rclone.conf),
airflow (a connection in an Airflow LocalFilesystemBackend file: .json, .yaml or .env).

Options:
  --config FILE          The YAML configuration (several outputs and connections, health, source).
  --check                Validate the configuration and print what would be written where; write nothing.
  --once                 Write every output once and exit (cron, init containers): 0 if all were written.
  --connection NAME      The connection for --output (default: $DROPKEY_CONNECTION or "default").
  --output FORMAT:PATH   An output (repeatable).
  --margin DURATION      Rewrite when less than this is left (5m to 2h; default 30m).
  --mode MODE            File mode, e.g. 0640 (default: keep the file's mode; 0600 for a new file).
  --command CMD          Run CMD (with /bin/sh -c) after each write of each output.
  --var NAME             env: a variable that receives the token (repeatable; default DROPBOX_ACCESS_TOKEN).
  --remote NAME          rclone: the remote (default: "dropbox", or the connection name unless "default").
  --include-refresh-token  rclone: also write the refresh token and app credentials (for rclone mount).
  --conn-id ID           airflow: the connection id (default: "dropbox_default", or the connection name).
  --field password|login airflow: the field that holds the token (default password).
  --form json|yaml|env   airflow: the file's form (default: from the file name).
  --serve-url URL        Take tokens from a dropkey serve instead of the local store ...
  --api-key-file FILE    ... with the token:read API key in this file.
  --health-file FILE     Keep FILE present while every output holds an unexpired token.
  --health-listen ADDR   Answer GET http://ADDR/healthz (loopback only, e.g. 127.0.0.1:8787).
  --log-format json|text Logs on stderr (default: text on a terminal, JSON otherwise).
  --log-level LEVEL      debug, info (default), warn or error.
`;

const OPTIONS = {
  config: { type: 'string' },
  check: { type: 'boolean' },
  once: { type: 'boolean' },
  connection: { type: 'string' },
  output: { type: 'string', multiple: true },
  margin: { type: 'string' },
  mode: { type: 'string' },
  command: { type: 'string' },
  var: { type: 'string', multiple: true },
  remote: { type: 'string' },
  'include-refresh-token': { type: 'boolean' },
  'conn-id': { type: 'string' },
  field: { type: 'string' },
  form: { type: 'string' },
  'serve-url': { type: 'string' },
  'api-key-file': { type: 'string' },
  'health-file': { type: 'string' },
  'health-listen': { type: 'string' },
  'log-format': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

type Values = ReturnType<typeof parseOptions<typeof OPTIONS>>['values'];

/** Flags that describe outputs or the source: given with --config they would be silently ignored, so refused. */
const OUTPUT_FLAGS = ['connection', 'output', 'margin', 'mode', 'command', 'var', 'remote', 'include-refresh-token', 'conn-id', 'field', 'form', 'serve-url', 'api-key-file', 'health-file', 'health-listen'] as const;

/** The one-output flags as the configuration file would spell them, checked by the same schema. */
function rawFromFlags(v: Values): Record<string, unknown> {
  const outputs = (v.output ?? []).map((spec) => {
    const i = spec.indexOf(':');
    const format = i < 0 ? '' : spec.slice(0, i);
    const path = i < 0 ? '' : spec.slice(i + 1);
    if (!(OUTPUT_FORMATS as readonly string[]).includes(format) || path === '') {
      throw usageError('agent', `--output ${JSON.stringify(spec)} must be FORMAT:PATH with FORMAT one of ${OUTPUT_FORMATS.join(', ')}`);
    }
    const o: Record<string, unknown> = { format, path };
    if (v.mode !== undefined) o['mode'] = v.mode;
    if (v.command !== undefined) o['command'] = v.command;
    if (format === 'env' && v.var) o['variables'] = v.var;
    if (format === 'rclone') {
      if (v.remote !== undefined) o['remote'] = v.remote;
      if (v['include-refresh-token']) o['include_refresh_token'] = true;
    }
    if (format === 'airflow') {
      if (v['conn-id'] !== undefined) o['conn_id'] = v['conn-id'];
      if (v.field !== undefined) o['field'] = v.field;
      if (v.form !== undefined) o['form'] = v.form;
    }
    return o;
  });
  const raw: Record<string, unknown> = { outputs };
  if (v.connection !== undefined) raw['connection'] = v.connection;
  if (v.margin !== undefined) raw['margin'] = v.margin;
  if (v['serve-url'] !== undefined || v['api-key-file'] !== undefined) {
    if (v['serve-url'] === undefined || v['api-key-file'] === undefined) throw usageError('agent', '--serve-url and --api-key-file go together');
    raw['source'] = { kind: 'serve', url: v['serve-url'], api_key_file: v['api-key-file'] };
  }
  if (v['health-file'] !== undefined || v['health-listen'] !== undefined) {
    raw['health'] = {
      ...(v['health-file'] === undefined ? {} : { file: v['health-file'] }),
      ...(v['health-listen'] === undefined ? {} : { listen: v['health-listen'] }),
    };
  }
  return raw;
}

async function readAgentConfig(ctx: CommandContext, v: Values, cli: CliConfig): Promise<AgentConfig> {
  const common = { home: ctx.env['HOME'], defaultConnection: cli.connection };
  if (v.config !== undefined) return readConfigFile(v.config, common);
  if (!v.output || v.output.length === 0) throw usageError('agent', 'give --config FILE, or --output FORMAT:PATH (with --connection NAME)');
  return normalizeConfig(rawFromFlags(v), { ...common, baseDir: ctx.cwd }, null);
}

interface OpenedSource {
  source: TokenSource;
}

async function openSource(config: AgentConfig, cli: CliConfig, logger: AgentLogger): Promise<OpenedSource> {
  if (config.source.kind === 'serve') {
    const { ServeSource } = await import('../../agent/sources.js');
    return { source: new ServeSource({ url: config.source.url, apiKeyFile: config.source.apiKeyFile }) };
  }
  const [{ StoreSource }, { openStoreOnly }, { Dropkey }] = await Promise.all([
    import('../../agent/sources.js'),
    import('../session.js'),
    import('../../connections/dropkey.js'),
  ]);
  const store = await openStoreOnly(cli);
  try {
    const dk = await Dropkey.open({ store, urls: cli.urls, fetch: globalThis.fetch, now: Date.now, logger });
    const where = cli.databaseUrl === undefined ? cli.home : 'DROPKEY_DATABASE_URL';
    return {
      source: new StoreSource(dk, where, async () => {
        await dk.close();
        await store.close();
      }),
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

function logFormat(ctx: CommandContext, v: Values): LogFormat {
  const f = v['log-format'];
  if (f === undefined) return ctx.stderr.isTTY ? 'text' : 'json';
  if (f !== 'json' && f !== 'text') throw usageError('agent', `--log-format must be json or text, got "${f}"`);
  return f;
}

function logLevel(v: Values): string {
  const l = v['log-level'] ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(l)) throw usageError('agent', `--log-level must be debug, info, warn or error, got "${l}"`);
  return l;
}

const command: Command = {
  summary: 'Keep valid tokens in the files other tools read (token, json, env, rclone, airflow)',
  usage,
  options: OPTIONS,
  async run(ctx) {
    const { values: v } = parseOptions('agent', ctx.argv, OPTIONS);
    if (v.check && v.once) throw usageError('agent', '--check and --once cannot be combined');
    if (v.config !== undefined) {
      const mixed = OUTPUT_FLAGS.filter((f) => v[f] !== undefined);
      if (mixed.length > 0) throw usageError('agent', `--${mixed[0]} cannot be combined with --config: put it in the configuration file`);
    }
    const format = logFormat(ctx, v);
    const level = logLevel(v);
    const cli = await loadConfig(ctx.env, ctx.cwd);
    let config = await readAgentConfig(ctx, v, cli);
    await checkPaths(config);
    const { createAgentLogger } = await import('../../agent/log.js');
    const logger = createAgentLogger({ stream: ctx.stderr, format, level });

    if (v.check) return check(ctx, config, cli, logger);

    let { source } = await openSource(config, cli, logger);
    const { Agent } = await import('../../agent/agent.js');
    const { HealthEndpoint, updateHealthFile } = await import('../../agent/health.js');
    const agent: InstanceType<typeof Agent> = new Agent(config, {
      source,
      logger,
      advice: (a) => adviceLines(a).join(' '),
      env: ctx.env,
      cwd: ctx.cwd,
      onHealth: async (status) => {
        const file = agent.config.health.file;
        if (file !== null) await updateHealthFile(file, status);
      },
    });

    if (v.once) {
      try {
        const ok = await agent.runOnce();
        if (!ok) logger.error({}, 'not every output could be written (see the errors above)');
        return ok ? 0 : 1;
      } finally {
        await source.close();
      }
    }

    let endpoint: InstanceType<typeof HealthEndpoint> | null = null;
    let listening: string | null = null;
    const listenHealth = async (c: AgentConfig): Promise<void> => {
      const want = c.health.listen === null ? null : `${c.health.listen.host}:${c.health.listen.port}`;
      if (want === listening) return;
      await endpoint?.close();
      endpoint = null;
      listening = null;
      if (c.health.listen === null) return;
      const e = new HealthEndpoint(() => agent.status());
      const { url } = await e.listen(c.health.listen.host, c.health.listen.port);
      endpoint = e;
      listening = want;
      logger.info({ url }, `health endpoint listening on ${url}`);
    };

    // SIGHUP: read the file again; a bad new configuration is logged and the running one kept.
    let reloading = Promise.resolve();
    const unsubscribe = ctx.onHangup?.(() => {
      reloading = reloading.then(async () => {
        if (v.config === undefined) {
          logger.warn({}, 'SIGHUP: there is no configuration file to reload (the agent runs from flags)');
          return;
        }
        try {
          const next = await readAgentConfig(ctx, v, cli);
          await checkPaths(next);
          const opened = JSON.stringify(next.source) === JSON.stringify(config.source) ? { source } : await openSource(next, cli, logger);
          const old = await agent.reload(next, opened.source);
          if (old !== opened.source) await old.close();
          source = opened.source;
          config = next;
          await listenHealth(next);
        } catch (err) {
          const e = err instanceof DropkeyError ? err : null;
          logger.error({ code: e?.code ?? null }, `SIGHUP: the new configuration was not applied, the running one is kept: ${e?.message ?? String(err)}`);
        }
      });
    });

    // Stopping starts at the signal, even in the middle of the first pass: a token fetch in flight is cancelled,
    // a write in flight completes.
    let stopped: Promise<void> | null = null;
    const stop = (): Promise<void> => {
      if (stopped === null) {
        logger.info({}, 'stopping: finishing the writes in progress');
        stopped = agent.stop();
      }
      return stopped;
    };
    const aborted = new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    }).then(stop);
    try {
      await listenHealth(config);
      if (!ctx.signal.aborted) await agent.start();
      await aborted;
      await reloading;
      await stop();
      logger.info({}, 'agent stopped');
      return 0;
    } finally {
      unsubscribe?.();
      await (endpoint as InstanceType<typeof HealthEndpoint> | null)?.close();
      await source.close();
    }
  },
};
export default command;

/** `--check`: the configuration is valid (checked before this); say what would be written where. */
async function check(ctx: CommandContext, config: AgentConfig, cli: CliConfig, logger: AgentLogger): Promise<number> {
  const { describeOutput, renderOutput } = await import('../../agent/outputs/index.js');
  const { readFile, stat } = await import('node:fs/promises');
  const out: string[] = [];
  out.push(`Configuration: ${config.file ?? 'from flags'} is valid.`);
  const { source } = await openSource(config, cli, logger);
  const problems: string[] = [];
  try {
    out.push(`Tokens from: ${source.description}.`);
    out.push(`Margin: each output is rewritten before its token has less than ${formatSeconds(config.marginSeconds)} left.`);
    const connections = [...new Set(config.outputs.map((o) => o.connection))];
    for (const name of connections) {
      const state = await source.inspect(name);
      out.push(`Connection "${name}"${state ? `: ${state}` : ''}`);
      if (state?.startsWith('problem:')) problems.push(`connection "${name}": ${state.slice('problem: '.length)}`);
      for (const o of config.outputs.filter((x) => x.connection === name)) {
        let mode = o.mode === null ? '0600 for a new file' : `0${o.mode.toString(8)}`;
        let previous: string | null = null;
        try {
          previous = await readFile(o.path, 'utf8');
          if (o.mode === null) mode = `0${((await stat(o.path)).mode & 0o777).toString(8)} (kept)`;
        } catch {
          previous = null;
        }
        out.push(`  ${o.path}`);
        out.push(`    ${o.format}: ${describeOutput(o)}; mode ${mode}; ${previous === null ? 'will be created' : 'exists, will be updated'}`);
        if (o.command) out.push(`    then runs: ${o.command.join(' ')}`);
        // The renderer on the file as it is now (with a placeholder token) finds a damaged or foreign file now
        // rather than at the first write.
        try {
          renderOutput(o, previous, {
            connection: name,
            accessToken: 'sl.CHECK',
            expiresAt: new Date(0),
            scopes: [],
            account: { id: null, email: null, name: null },
            team: null,
            appKey: 'CHECK',
            ...(o.format === 'rclone' && o.rclone.includeRefreshToken ? { longLived: { refreshToken: 'CHECK', appSecret: null } } : {}),
          });
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          out.push(`    PROBLEM: ${message}`);
          problems.push(`${o.path}: ${message}`);
        }
      }
    }
    if (config.health.file) out.push(`Health file: ${config.health.file} (present while every output holds an unexpired token).`);
    if (config.health.listen) out.push(`Health endpoint: http://${config.health.listen.host}:${config.health.listen.port}/healthz`);
    out.push(problems.length === 0 ? 'Nothing was written.' : `Nothing was written; ${problems.length} problem${problems.length > 1 ? 's' : ''} found.`);
    ctx.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await source.close();
  }
  // A valid configuration that would fail at run time: "found a problem" (1), not a usage error (2).
  if (problems.length > 0) {
    ctx.stderr.write(`dropkey: the agent would not work as configured:\n${problems.map((p) => `  - ${p}`).join('\n')}\n  Fix what is named above, then run dropkey agent --check again.\n`);
    return 1;
  }
  return 0;
}

function formatSeconds(s: number): string {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return [h ? `${h}h` : '', m ? `${m}m` : '', r ? `${r}s` : ''].join('') || '0s';
}
