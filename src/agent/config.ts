/**
 * The agent's configuration: read → schema → normalize → rules, every problem reported at once (changesets'
 * model). The same schema checks a YAML file (docs/decisions/0006-agent-config.md says why YAML) and the object
 * the one-output flags build, so both spell options the same way.
 *
 * Nothing here touches the network or writes: checks of the file system (the output directories exist and can be
 * written) are in checkPaths, which the agent runs at start and on every reload.
 */
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { isAbsolute, dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { NAME_PATTERN } from '../connections/names.js';
import { ENV_NAME, type EnvOutputOptions } from './outputs/env.js';
import type { AirflowOutputOptions, RcloneOutputOptions } from './outputs/types.js';

export const OUTPUT_FORMATS = ['token', 'json', 'env', 'rclone', 'airflow'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Dropbox access tokens live 4 hours (https://developers.dropbox.com/oauth-guide). */
export const TOKEN_LIFETIME_SECONDS = 4 * 3600;
export const DEFAULT_MARGIN_SECONDS = 30 * 60;
/**
 * The margin must leave a new token time to be useful (at most half its life, so a margin cannot make every
 * request a refresh) and must not be under the facade's own 5-minute refresh margin.
 */
export const MIN_MARGIN_SECONDS = 5 * 60;
export const MAX_MARGIN_SECONDS = TOKEN_LIFETIME_SECONDS / 2;
export const DEFAULT_COMMAND_TIMEOUT_SECONDS = 60;

interface OutputBase {
  /** Where the output was declared ("outputs[2]" or "--output airflow:/files/conn.json"), for messages. */
  label: string;
  connection: string;
  /** Absolute path. */
  path: string;
  /** The file mode to write, or null to keep the current file's mode (0600 for a new file). */
  mode: number | null;
  /** The command run after each write of this output: an argv (a string is run with /bin/sh -c). */
  command: string[] | null;
}

export type OutputConfig = OutputBase &
  (
    | { format: 'token' }
    | { format: 'json' }
    | { format: 'env'; env: EnvOutputOptions }
    | { format: 'rclone'; rclone: RcloneOutputOptions }
    | { format: 'airflow'; airflow: AirflowOutputOptions }
  );

export type SourceConfig = { kind: 'store' } | { kind: 'serve'; url: string; apiKeyFile: string };

export interface AgentConfig {
  /** The file the configuration came from, or null for flags. */
  file: string | null;
  source: SourceConfig;
  marginSeconds: number;
  commandTimeoutSeconds: number;
  outputs: OutputConfig[];
  health: { file: string | null; listen: { host: string; port: number } | null };
}

// ---------------------------------------------------------------- schema (the file's own spelling)

const DURATION = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** "30m", "1h30m", "90s" or a number of seconds. */
export function parseDuration(v: string | number): number | null {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? v : null;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const m = DURATION.exec(t);
  if (!m || t === '') return null;
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const s = parseDuration(v);
  if (s === null) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a duration: write e.g. 30m, 1h or 90s (or a number of seconds)` });
    return z.NEVER;
  }
  return s;
});

/**
 * A file mode. YAML 1.2 reads `0600` as the decimal number 600, so a number made of octal digits is read as
 * octal; anything else must be a string such as "0640".
 */
const fileMode = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const digits = typeof v === 'number' ? String(v) : v.trim().replace(/^0o/, '');
  if (!/^0?[0-7]{3}$/.test(digits)) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a file mode: write it as a quoted octal string, e.g. mode: "0600"` });
    return z.NEVER;
  }
  const mode = Number.parseInt(digits, 8);
  if ((mode & 0o400) === 0) {
    ctx.addIssue({ code: 'custom', message: `mode ${JSON.stringify(v)} would not let the agent read the file back before a rewrite: keep the owner's read bit (e.g. "0600" or "0640")` });
    return z.NEVER;
  }
  return mode;
});

const name = z.string().regex(NAME_PATTERN, 'a name of letters, digits, "_", "." and "-" (at most 64 characters), starting with a letter or digit');
const envName = z.string().regex(ENV_NAME, 'a variable name (letters, digits and "_", not starting with a digit)');
const command = z.union([z.string().min(1), z.array(z.string()).min(1)]);

const common = {
  connection: name.optional(),
  path: z.string().min(1),
  mode: fileMode.optional(),
  command: command.optional(),
};

const outputSchema = z.discriminatedUnion('format', [
  z.strictObject({ format: z.literal('token'), ...common }),
  z.strictObject({ format: z.literal('json'), ...common }),
  z.strictObject({
    format: z.literal('env'),
    ...common,
    variables: z.array(envName).min(1).optional(),
    expiry_variable: z.union([envName, z.null()]).optional(),
  }),
  z.strictObject({
    format: z.literal('rclone'),
    ...common,
    remote: z.string().regex(/^[A-Za-z0-9_. -]*[A-Za-z0-9_.-]$/, 'an rclone remote name (letters, digits, "_", ".", "-" and spaces)').optional(),
    include_refresh_token: z.boolean().optional(),
  }),
  z.strictObject({
    format: z.literal('airflow'),
    ...common,
    conn_id: z.string().regex(/^[A-Za-z0-9_.-]{1,250}$/, 'an Airflow connection id (letters, digits, "_", "." and "-")').optional(),
    form: z.enum(['json', 'yaml', 'env']).optional(),
    field: z.enum(['password', 'login']).optional(),
  }),
]);

const sourceSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('store') }),
  z.strictObject({ kind: z.literal('serve'), url: z.string().min(1), api_key_file: z.string().min(1) }),
]);

const fileSchema = z.strictObject({
  source: sourceSchema.optional(),
  connection: name.optional(),
  margin: duration.optional(),
  command_timeout: duration.optional(),
  outputs: z.array(outputSchema).min(1, 'list at least one output'),
  health: z.strictObject({ file: z.string().min(1).optional(), listen: z.string().min(1).optional() }).optional(),
});

export type RawAgentConfig = z.input<typeof fileSchema>;

// ---------------------------------------------------------------- reading

export interface ConfigContext {
  /** Relative paths are resolved against this directory (the config file's, or the working directory for flags). */
  baseDir: string;
  /** For `~/` in paths. */
  home: string | undefined;
  /** The connection of outputs that name none (DROPKEY_CONNECTION or "default"). */
  defaultConnection: string;
}

function problemsError(where: string, problems: string[]): DropkeyError {
  return new DropkeyError(
    ErrorCodes.BAD_INPUT,
    `${where}: ${problems.length === 1 ? problems[0] : `${problems.length} problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`}`,
    { hint: 'Fix the configuration, then check it with: dropkey agent --check (docs/agent.md lists every option).', details: { problems } },
  );
}

function pathOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out || '(top level)';
}

/** Reads and checks a YAML configuration file. */
export async function readConfigFile(file: string, ctx: Omit<ConfigContext, 'baseDir'>): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `cannot read the agent configuration ${file}: ${code === 'ENOENT' ? 'no such file' : code ?? String(err)}.`, {
      hint: 'Check the path given to --config (docs/agent.md has an example file).',
    });
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const what = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      return `${pos ? `line ${pos.line}, column ${pos.col}: ` : ''}${what}`;
    });
    throw problemsError(`${file} is not valid YAML`, lines);
  }
  return normalizeConfig(doc.toJS() as unknown, { ...ctx, baseDir: dirname(resolve(file)) }, resolve(file));
}

/** Checks a configuration object (a parsed file, or what the flags built) and resolves it. */
export function normalizeConfig(raw: unknown, ctx: ConfigContext, file: string | null): AgentConfig {
  const where = file ?? 'the agent options';
  if (raw === null || raw === undefined) throw problemsError(where, ['the configuration is empty: it needs at least an "outputs" list']);
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    throw problemsError(
      where,
      parsed.error.issues.map((i) => {
        // Zod's default wording for unknown keys and union tags, made specific.
        if (i.code === 'unrecognized_keys') return `${pathOf(i.path)}: unknown option${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}`;
        if (i.code === 'invalid_union' && i.path.at(-1) !== undefined && (i as { note?: string }).note === 'No matching discriminator') {
          const key = i.path.length > 0 && String(i.path[0]) === 'source' ? 'kind (store or serve)' : `format (one of ${OUTPUT_FORMATS.join(', ')})`;
          return `${pathOf(i.path)}: missing or unknown ${key}`;
        }
        return `${pathOf(i.path)}: ${i.message}`;
      }),
    );
  }
  const c = parsed.data;
  const problems: string[] = [];
  const abs = (p: string): string => {
    const expanded = p.startsWith('~/') && ctx.home ? `${ctx.home}${p.slice(1)}` : p;
    return isAbsolute(expanded) ? resolve(expanded) : resolve(ctx.baseDir, expanded);
  };

  const marginSeconds = c.margin ?? DEFAULT_MARGIN_SECONDS;
  if (marginSeconds < MIN_MARGIN_SECONDS || marginSeconds > MAX_MARGIN_SECONDS) {
    problems.push(`margin: must be between ${MIN_MARGIN_SECONDS / 60}m and ${MAX_MARGIN_SECONDS / 3600}h (a token lives 4h), got ${marginSeconds}s`);
  }
  const commandTimeoutSeconds = c.command_timeout ?? DEFAULT_COMMAND_TIMEOUT_SECONDS;
  if (commandTimeoutSeconds < 1 || commandTimeoutSeconds > 3600) problems.push(`command_timeout: must be between 1s and 1h, got ${commandTimeoutSeconds}s`);

  let source: SourceConfig = { kind: 'store' };
  if (c.source?.kind === 'serve') {
    let url: URL | null = null;
    try {
      url = new URL(c.source.url);
    } catch {
      url = null;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.search || url.hash) {
      problems.push(`source.url: ${JSON.stringify(c.source.url)} is not the base URL of a dropkey serve (e.g. https://dropkey.example.com; the API key goes in api_key_file, not in the URL)`);
    } else {
      source = { kind: 'serve', url: url.href.replace(/\/+$/, ''), apiKeyFile: abs(c.source.api_key_file) };
    }
  }

  const outputs: OutputConfig[] = [];
  c.outputs.forEach((o, i) => {
    const label = `outputs[${i}]`;
    const connection = o.connection ?? c.connection ?? ctx.defaultConnection;
    const base: OutputBase = {
      label,
      connection,
      path: abs(o.path),
      mode: o.mode ?? null,
      command: o.command === undefined ? null : typeof o.command === 'string' ? ['/bin/sh', '-c', o.command] : o.command,
    };
    switch (o.format) {
      case 'token':
      case 'json':
        outputs.push({ ...base, format: o.format });
        break;
      case 'env': {
        const variables = o.variables ?? ['DROPBOX_ACCESS_TOKEN'];
        const expiryVariable = o.expiry_variable === undefined ? 'DROPBOX_ACCESS_TOKEN_EXPIRES_AT' : o.expiry_variable;
        if (expiryVariable !== null && variables.includes(expiryVariable)) problems.push(`${label}.expiry_variable: ${expiryVariable} is also a token variable`);
        if (new Set(variables).size !== variables.length) problems.push(`${label}.variables: a variable is listed twice`);
        outputs.push({ ...base, format: 'env', env: { variables, expiryVariable } });
        break;
      }
      case 'rclone': {
        const includeRefreshToken = o.include_refresh_token ?? false;
        if (includeRefreshToken && source.kind === 'serve') {
          problems.push(`${label}.include_refresh_token: a dropkey serve never hands out refresh tokens; use the local store as the source, or let the agent keep the token fresh (the default)`);
        }
        outputs.push({ ...base, format: 'rclone', rclone: { remote: o.remote ?? defaultSectionName(connection, 'dropbox'), includeRefreshToken } });
        break;
      }
      case 'airflow': {
        const form = o.form ?? airflowFormOf(base.path);
        if (form === null) problems.push(`${label}.form: say which Airflow file form ${o.path} is (json, yaml or env); it cannot be told from the file name`);
        outputs.push({
          ...base,
          format: 'airflow',
          airflow: { connId: o.conn_id ?? defaultSectionName(connection, 'dropbox_default'), form: form ?? 'json', field: o.field ?? 'password' },
        });
        break;
      }
    }
  });

  // Outputs that share a file must be sections of one file of one format (rclone remotes, Airflow connections).
  const byPath = new Map<string, OutputConfig[]>();
  for (const o of outputs) byPath.set(o.path, [...(byPath.get(o.path) ?? []), o]);
  for (const [path, list] of byPath) {
    if (list.length < 2) continue;
    const labels = list.map((o) => o.label).join(', ');
    const first = list[0]!;
    const shareable = list.every((o) => o.format === first.format && (o.format === 'rclone' || (o.format === 'airflow' && first.format === 'airflow' && o.airflow.form === first.airflow.form)));
    if (!shareable) {
      problems.push(`${labels} all write ${path}: only rclone remotes, or Airflow connections of one form, can share a file`);
      continue;
    }
    const sections = list.map((o) => (o.format === 'rclone' ? o.rclone.remote : o.format === 'airflow' ? o.airflow.connId : ''));
    if (new Set(sections).size !== sections.length) problems.push(`${labels} write the same section of ${path}: give each its own ${first.format === 'rclone' ? 'remote' : 'conn_id'}`);
    if (new Set(list.map((o) => o.mode)).size > 1) problems.push(`${labels} write ${path} with different modes`);
  }

  let listen: AgentConfig['health']['listen'] = null;
  if (c.health?.listen !== undefined) {
    listen = parseListen(c.health.listen);
    if (listen === null) problems.push(`health.listen: ${JSON.stringify(c.health.listen)} must be a loopback address and port, e.g. 127.0.0.1:8787 (the endpoint is not meant to be reachable from other machines)`);
  }
  const healthFile = c.health?.file === undefined ? null : abs(c.health.file);
  if (healthFile !== null && byPath.has(healthFile)) problems.push(`health.file: ${healthFile} is also an output`);

  if (problems.length > 0) throw problemsError(file ?? 'the agent options', problems);
  return { file, source, marginSeconds, commandTimeoutSeconds, outputs, health: { file: healthFile, listen } };
}

/** `dropkey export`'s rule: the connection's own name, unless it is "default". */
function defaultSectionName(connection: string, fallback: string): string {
  return connection === 'default' ? fallback : connection;
}

function airflowFormOf(path: string): AirflowOutputOptions['form'] | null {
  if (/\.json$/i.test(path)) return 'json';
  if (/\.ya?ml$/i.test(path)) return 'yaml';
  if (/\.env$/i.test(path)) return 'env';
  return null;
}

function parseListen(v: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v.trim());
  if (!m) return null;
  const host = (m[1] ?? m[2])!;
  const port = Number(m[3]);
  if (port > 65535) return null;
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  return loopback ? { host: host === 'localhost' ? '127.0.0.1' : host, port } : null;
}

// ---------------------------------------------------------------- file system rules (at start and on reload)

/**
 * Every output's directory must exist and be writable (the temporary file is created beside the output, so the
 * rename is atomic), and an existing output must be a regular file. All problems at once, each naming its path.
 */
export async function checkPaths(config: AgentConfig): Promise<void> {
  const problems: string[] = [];
  const dirs = new Map<string, string>();
  for (const o of config.outputs) dirs.set(dirname(o.path), o.label);
  if (config.health.file !== null) dirs.set(dirname(config.health.file), 'health.file');
  for (const [dir, label] of dirs) {
    try {
      const s = await stat(dir);
      if (!s.isDirectory()) {
        problems.push(`${label}: ${dir} is not a directory`);
        continue;
      }
      await access(dir, constants.W_OK | constants.X_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(
        code === 'ENOENT'
          ? `${label}: the directory ${dir} does not exist (create it, or mount the volume there)`
          : `${label}: the directory ${dir} cannot be written by this process (${code ?? String(err)}); the agent writes a temporary file there and renames it`,
      );
    }
  }
  for (const o of config.outputs) {
    try {
      const s = await stat(o.path);
      if (!s.isFile()) problems.push(`${o.label}: ${o.path} exists and is not a regular file`);
    } catch {
      // Missing: created on the first write.
    }
  }
  if (config.source.kind === 'serve') {
    try {
      await access(config.source.apiKeyFile, constants.R_OK);
    } catch (err) {
      problems.push(`source.api_key_file: cannot read ${config.source.apiKeyFile} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  if (problems.length > 0) throw problemsError(config.file ?? 'the agent options', problems);
}
