/**
 * `dropkey agent`'s engine: keeps every configured output holding a token with at least the margin left.
 *
 * Work is per connection: one token fetch feeds all of its outputs. Each connection has one timer, armed for
 * when its token will have `margin + WAKE_LEAD` left (scheduled by expiry, never polled); the fetch then asks
 * the source for a token valid `margin + 2 × WAKE_LEAD`, which makes the source refresh. Failures are retried
 * with exponential back-off and jitter; a failure only a person can fix (needs re-authorisation, an unknown
 * connection, a refused API key) is logged once as an error naming the fix, while the outputs keep the last good
 * token until it expires. Nothing is written unless it came from a successful fetch, and every write is atomic
 * (writer.ts).
 *
 * Time comes from `timers` (its clock and its setTimeout), so tests move hours in milliseconds.
 */
import { backoffDelay } from '../dropbox/retry.js';
import { DropkeyError, ErrorCodes, type Fix } from '../errors.js';
import { redactText } from '../connections/redact.js';
import type { AgentConfig, OutputConfig } from './config.js';
import { runCommand as defaultRunCommand, type RunCommand } from './command.js';
import type { HealthStatus, OutputHealth } from './health.js';
import type { AgentLogger } from './log.js';
import { renderOutput, wantsLongLived } from './outputs/index.js';
import type { TokenSnapshot } from './outputs/types.js';
import { needsAPerson, type TokenSource } from './sources.js';
import { removeStaleTemps, writeAtomic } from './writer.js';
import { rfc3339 } from './outputs/json.js';

export type TimerHandle = { readonly id: number } | NodeJS.Timeout;

/** The clock and timers the agent runs on (server/jobs/timers.ts ManualTimers fits, for tests). */
export interface AgentTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Real timers. Unlike the server's background timers they keep the process alive: waiting is the agent's job. */
export const processTimers: AgentTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.min(Math.max(0, ms), 2_147_483_647)),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface AgentDeps {
  source: TokenSource;
  timers?: AgentTimers;
  logger: AgentLogger;
  /** In [0, 1): the jitter of retry delays. */
  random?: () => number;
  runCommand?: RunCommand;
  /** The environment of post-write commands (the agent's own). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Called after every pass with the health status (the CLI keeps the health file from it). */
  onHealth?: (status: HealthStatus) => Promise<void> | void;
  /** How this surface words an error's advice (its hint, and its Fix as the surface renders it); default: the hint. */
  advice?: (advice: { hint?: string | undefined; fix?: Fix | undefined }) => string;
}

/** The timer fires when the token has margin + WAKE_LEAD left; the fetch then asks for margin + 2 × WAKE_LEAD. */
export const WAKE_LEAD_MS = 60_000;
/** Retry delays after a failed fetch or write: 5 s doubling up to 5 min, with the API client's equal jitter. */
const RETRY = { baseDelayMs: 5_000, maxDelayMs: 5 * 60_000 } as const;
/** A token the source hands out with less than the margin left is re-checked after half its life, not sooner. */
const MIN_RECHECK_MS = 30_000;
/** Tokens without an expiry (legacy long-lived ones) are re-fetched hourly, in case the connection changed. */
const NO_EXPIRY_RECHECK_MS = 3600_000;

interface OutputState {
  config: OutputConfig;
  /** What this agent last wrote there (or found there identical at start). */
  written: { accessToken: string; expiresAt: Date | null; at: number } | null;
  failures: number;
  problem: string | null;
  timer: TimerHandle | null;
  /** Commands of one output run one at a time, in write order. */
  commandChain: Promise<void>;
}

interface ConnectionState {
  name: string;
  outputs: OutputState[];
  snapshot: TokenSnapshot | null;
  timer: TimerHandle | null;
  expiryTimer: TimerHandle | null;
  failures: number;
  /** The message of the failure already logged as an error (logged once until it changes or clears). */
  problem: string | null;
  warnedShort: boolean;
}

export class Agent {
  #config: AgentConfig;
  #source: TokenSource;
  readonly #timers: AgentTimers;
  readonly #log: AgentLogger;
  readonly #random: () => number;
  readonly #runCommand: RunCommand;
  readonly #env: Record<string, string | undefined>;
  readonly #cwd: string;
  readonly #onHealth: AgentDeps['onHealth'];
  #connections = new Map<string, ConnectionState>();
  readonly #inflight = new Set<Promise<unknown>>();
  /** Writes to one file are serialized (rclone remotes and Airflow connections may share a file). */
  readonly #pathChains = new Map<string, Promise<unknown>>();
  #abort = new AbortController();
  #stopping = false;
  #once = false;

  readonly #advice: NonNullable<AgentDeps['advice']>;

  constructor(config: AgentConfig, deps: AgentDeps) {
    this.#config = config;
    this.#source = deps.source;
    this.#advice = deps.advice ?? ((a) => a.hint ?? '');
    this.#timers = deps.timers ?? processTimers;
    this.#log = deps.logger;
    this.#random = deps.random ?? Math.random;
    this.#runCommand = deps.runCommand ?? defaultRunCommand;
    this.#env = deps.env ?? {};
    this.#cwd = deps.cwd ?? '/';
    this.#onHealth = deps.onHealth;
    this.#connections = this.#buildStates(config, new Map());
  }

  get config(): AgentConfig {
    return this.#config;
  }

  /** Writes every output now, then keeps them fresh until stop(). Resolves once the first pass is done. */
  async start(): Promise<void> {
    await this.#cleanTemps();
    this.#log.info(
      { outputs: this.#config.outputs.length, connections: this.#connections.size, margin_s: this.#config.marginSeconds, source: this.#source.description },
      'agent started',
    );
    await this.#track(Promise.all([...this.#connections.values()].map((c) => this.#cycle(c, true))));
    const status = this.status();
    await this.#health(status);
    const ok = status.outputs.filter((o) => o.ok).length;
    this.#log.info({ written: ok, outputs: status.outputs.length }, ok === status.outputs.length ? 'ready: every output is written' : `started: ${ok} of ${status.outputs.length} outputs written, retrying the others`);
  }

  /** `--once`: every output written once (commands included); true when all of them were. */
  async runOnce(): Promise<boolean> {
    this.#once = true;
    await this.#cleanTemps();
    await Promise.all([...this.#connections.values()].map((c) => this.#cycle(c, true)));
    await this.idle();
    const status = this.status();
    await this.#health(status);
    return status.ok;
  }

  /**
   * Applies a new configuration (SIGHUP). Outputs kept from the old one are only rewritten when their text
   * changes; new ones are written at once. The old source is returned for the caller to close.
   */
  async reload(config: AgentConfig, source: TokenSource): Promise<TokenSource> {
    this.#clearTimers();
    await this.idle();
    const old = this.#source;
    // Tokens known from the old source are only carried over when the source is the same one.
    const sameSource = JSON.stringify(config.source) === JSON.stringify(this.#config.source);
    const previous = this.#connections;
    this.#config = config;
    this.#source = source;
    this.#connections = this.#buildStates(config, sameSource ? previous : new Map());
    this.#log.info({ outputs: config.outputs.length, connections: this.#connections.size, source: source.description }, 'configuration reloaded');
    await this.#cleanTemps();
    await this.#track(Promise.all([...this.#connections.values()].map((c) => this.#cycle(c, false))));
    await this.#health();
    return old;
  }

  /** Stops timers and waits for the work in progress (a write in flight completes; a token fetch is cancelled). */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#clearTimers();
    this.#abort.abort(new DropkeyError(ErrorCodes.CANCELLED, 'the agent is stopping'));
    await this.idle();
  }

  /** Resolves when nothing is in flight (fetches, writes, commands). */
  async idle(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  status(): HealthStatus {
    const now = this.#timers.now();
    const outputs: OutputHealth[] = [];
    for (const c of this.#connections.values()) {
      for (const o of c.outputs) {
        const w = o.written;
        const fresh = w !== null && (w.expiresAt === null || w.expiresAt.getTime() > now);
        outputs.push({
          path: o.config.path,
          connection: c.name,
          format: o.config.format,
          written_at: w === null ? null : new Date(w.at).toISOString(),
          expires_at: w?.expiresAt ? w.expiresAt.toISOString() : null,
          ok: fresh && o.problem === null,
          problem: o.problem ?? c.problem ?? (w === null ? 'not written yet' : fresh ? null : 'the token in the file has expired'),
        });
      }
    }
    return { ok: outputs.every((o) => o.ok), checked_at: new Date(now).toISOString(), outputs };
  }

  // ---------------------------------------------------------------- state

  #buildStates(config: AgentConfig, previous: Map<string, ConnectionState>): Map<string, ConnectionState> {
    const out = new Map<string, ConnectionState>();
    for (const o of config.outputs) {
      let c = out.get(o.connection);
      if (!c) {
        const prev = previous.get(o.connection);
        c = { name: o.connection, outputs: [], snapshot: prev?.snapshot ?? null, timer: null, expiryTimer: null, failures: 0, problem: prev?.problem ?? null, warnedShort: false };
        out.set(o.connection, c);
      }
      const kept = previous.get(o.connection)?.outputs.find((p) => JSON.stringify(p.config) === JSON.stringify(o));
      c.outputs.push({ config: o, written: kept?.written ?? null, failures: 0, problem: null, timer: null, commandChain: Promise.resolve() });
    }
    return out;
  }

  #clearTimers(): void {
    for (const c of this.#connections.values()) {
      if (c.timer) this.#timers.clearTimeout(c.timer);
      if (c.expiryTimer) this.#timers.clearTimeout(c.expiryTimer);
      c.timer = c.expiryTimer = null;
      for (const o of c.outputs) {
        if (o.timer) this.#timers.clearTimeout(o.timer);
        o.timer = null;
      }
    }
  }

  async #cleanTemps(): Promise<void> {
    for (const o of this.#config.outputs) {
      const n = await removeStaleTemps(o.path);
      if (n > 0) this.#log.info({ path: o.path, removed: n }, 'removed temporary files left by an agent that was killed');
    }
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    void p.then(
      () => this.#inflight.delete(p),
      () => this.#inflight.delete(p),
    );
    return p;
  }

  #retryDelay(failures: number): number {
    // Equal jitter: agents started together (a deployment's replicas) spread their retries.
    return backoffDelay(Math.max(0, failures - 1), { ...RETRY, random: this.#random });
  }

  #arm(c: ConnectionState, delayMs: number): void {
    if (this.#stopping || this.#once) return;
    if (c.timer) this.#timers.clearTimeout(c.timer);
    c.timer = this.#timers.setTimeout(() => {
      c.timer = null;
      void this.#track(this.#cycle(c, false).then(() => this.#health()));
    }, delayMs);
  }

  // ---------------------------------------------------------------- one connection

  async #cycle(c: ConnectionState, force: boolean): Promise<void> {
    if (this.#stopping || this.#connections.get(c.name) !== c) return;
    const marginMs = this.#config.marginSeconds * 1000;
    let snapshot: TokenSnapshot;
    try {
      snapshot = await this.#source.fetch(c.name, {
        minValidSeconds: Math.ceil((marginMs + 2 * WAKE_LEAD_MS) / 1000),
        longLived: c.outputs.some((o) => wantsLongLived(o.config)),
        signal: this.#abort.signal,
      });
    } catch (err) {
      if (this.#stopping) return;
      this.#fetchFailed(c, err);
      return;
    }
    const now = this.#timers.now();
    if (c.problem !== null || c.failures > 0) {
      this.#log.info({ connection: c.name }, c.problem !== null ? 'the connection works again; outputs are being updated' : 'getting a token works again');
    }
    c.failures = 0;
    c.problem = null;
    if (c.expiryTimer) this.#timers.clearTimeout(c.expiryTimer);
    c.expiryTimer = null;
    c.snapshot = snapshot;

    await Promise.all(c.outputs.map((o) => this.#writeOutput(c, o, snapshot, force || o.written === null)));

    if (snapshot.expiresAt === null) {
      this.#arm(c, NO_EXPIRY_RECHECK_MS);
      return;
    }
    const left = snapshot.expiresAt.getTime() - now;
    const wakeIn = left - marginMs - WAKE_LEAD_MS;
    if (wakeIn >= MIN_RECHECK_MS) {
      c.warnedShort = false;
      this.#arm(c, wakeIn);
      return;
    }
    // The source could not give a token with the margin left (Dropbox issued a short one, or a serve that cannot
    // refresh sooner): use it, and look again after half its remaining life instead of asking in a loop.
    if (!c.warnedShort) {
      c.warnedShort = true;
      this.#log.warn(
        { connection: c.name, expires_at: snapshot.expiresAt.toISOString(), margin_s: this.#config.marginSeconds },
        'the token the source handed out expires within the margin; using it and checking again before it expires',
      );
    }
    this.#arm(c, Math.max(MIN_RECHECK_MS, Math.floor(left / 2)));
  }

  #fetchFailed(c: ConnectionState, err: unknown): void {
    c.failures++;
    const e = err instanceof DropkeyError ? err : null;
    const message = redactText(err instanceof Error ? err.message : String(err));
    const kept = c.snapshot?.expiresAt ? `the outputs keep the last good token until it expires at ${c.snapshot.expiresAt.toISOString()}` : 'the outputs keep what they hold';
    if (needsAPerson(err)) {
      // Logged once: retrying cannot help until someone acts, and a log full of the same line hides it.
      if (c.problem !== message) {
        c.problem = message;
        this.#log.error(
          { connection: c.name, code: e?.code ?? null, hint: e?.hint ?? null, fix: e?.fix ?? null },
          `${message.replace(/\.?$/, '.')} ${e && this.#advice(e) ? `Fix: ${this.#advice(e).split('\n')[0]} ` : ''}(${kept}; the agent checks again every few minutes.)`,
        );
      }
      this.#arm(c, this.#retryDelay(c.failures));
    } else {
      const delay = this.#retryDelay(c.failures);
      this.#log.warn({ connection: c.name, code: e?.code ?? null, attempt: c.failures, retry_in_s: Math.round(delay / 1000) }, `getting a token failed: ${message} (${kept}; retrying)`);
      this.#arm(c, delay);
    }
    this.#watchExpiry(c);
  }

  /** While a connection fails, the health signal must turn bad the moment the kept token expires. */
  #watchExpiry(c: ConnectionState): void {
    const exp = c.snapshot?.expiresAt;
    if (this.#once || this.#stopping || !exp || c.expiryTimer) return;
    const wait = exp.getTime() - this.#timers.now();
    if (wait <= 0) return;
    c.expiryTimer = this.#timers.setTimeout(() => {
      c.expiryTimer = null;
      this.#log.warn({ connection: c.name, expired_at: exp.toISOString() }, 'the token in the outputs has expired and no new one could be had yet');
      void this.#track(this.#health());
    }, wait);
  }

  // ---------------------------------------------------------------- one output

  async #writeOutput(c: ConnectionState, o: OutputState, snapshot: TokenSnapshot, force: boolean): Promise<void> {
    if (o.timer) this.#timers.clearTimeout(o.timer);
    o.timer = null;
    const cfg = o.config;
    // Never put an older token over a newer one this agent wrote (a late retry racing a refresh).
    if (o.written?.expiresAt && snapshot.expiresAt && snapshot.expiresAt < o.written.expiresAt && o.written.accessToken !== snapshot.accessToken) return;
    let result;
    try {
      result = await this.#onPath(cfg.path, () =>
        writeAtomic(
          cfg.path,
          (previous) => {
            try {
              return renderOutput(cfg, previous, snapshot);
            } catch (err) {
              if (err instanceof DropkeyError) {
                throw new DropkeyError(err.code, `${cfg.path}: ${err.message}`, { cause: err, ...(err.hint ? { hint: err.hint } : {}), ...(err.fix ? { fix: err.fix } : {}) });
              }
              throw err;
            }
          },
          { mode: cfg.mode, force },
        ),
      );
    } catch (err) {
      o.failures++;
      const e = err instanceof DropkeyError ? err : null;
      const message = redactText(err instanceof Error ? err.message : String(err));
      const delay = this.#retryDelay(o.failures);
      if (o.problem !== message) {
        o.problem = message;
        this.#log.error(
          { connection: c.name, path: cfg.path, code: e?.code ?? (err as NodeJS.ErrnoException).code ?? null },
          `could not write ${cfg.path}: ${message}${e && this.#advice(e) ? ` Fix: ${this.#advice(e)}` : ''} (the file was left as it was; retrying)`,
        );
      }
      if (!this.#stopping && !this.#once) {
        o.timer = this.#timers.setTimeout(() => {
          o.timer = null;
          const latest = c.snapshot;
          if (latest) void this.#track(this.#writeOutput(c, o, latest, true).then(() => this.#health()));
        }, delay);
      }
      return;
    }
    if (o.problem !== null) this.#log.info({ path: cfg.path }, 'the output can be written again');
    o.failures = 0;
    o.problem = null;
    o.written = { accessToken: snapshot.accessToken, expiresAt: snapshot.expiresAt, at: this.#timers.now() };
    if (!result.written) {
      this.#log.debug({ connection: c.name, path: cfg.path }, 'output already up to date');
      return;
    }
    this.#log.info(
      { connection: c.name, path: result.path, format: cfg.format, mode: `0${result.mode.toString(8)}`, expires_at: snapshot.expiresAt ? rfc3339(snapshot.expiresAt) : null },
      `wrote ${result.path}`,
    );
    if (cfg.command) this.#queueCommand(c, o, snapshot);
  }

  #onPath<T>(path: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#pathChains.get(path) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.#pathChains.set(path, settled);
    void settled.then(() => {
      if (this.#pathChains.get(path) === settled) this.#pathChains.delete(path);
    });
    return next;
  }

  #queueCommand(c: ConnectionState, o: OutputState, snapshot: TokenSnapshot): void {
    const argv = o.config.command!;
    const run = async (): Promise<void> => {
      const env = {
        ...withoutStoreSecrets(this.#env),
        DROPKEY_OUTPUT_PATH: o.config.path,
        DROPKEY_OUTPUT_FORMAT: o.config.format,
        DROPKEY_CONNECTION: c.name,
        DROPKEY_TOKEN_EXPIRES_AT: snapshot.expiresAt ? rfc3339(snapshot.expiresAt) : '',
      };
      const r = await this.#runCommand(argv, { env, timeoutMs: this.#config.commandTimeoutSeconds * 1000, cwd: this.#cwd });
      const ok = r.code === 0 && !r.timedOut;
      const fields = { connection: c.name, path: o.config.path, exit_code: r.code, signal: r.signal, output: r.output ? redactText(r.output) : null };
      if (ok) this.#log.info(fields, 'command after write succeeded');
      else
        this.#log.warn(
          fields,
          r.timedOut ? `command after write timed out after ${this.#config.commandTimeoutSeconds}s and was stopped` : `command after write failed with exit status ${r.code ?? r.signal}`,
        );
    };
    o.commandChain = this.#track(o.commandChain.then(run, run));
  }

  async #health(status?: HealthStatus): Promise<void> {
    if (!this.#onHealth) return;
    try {
      await this.#onHealth(status ?? this.status());
    } catch (err) {
      this.#log.warn({ err: String(err) }, 'could not update the health file');
    }
  }
}

/**
 * The agent's environment minus what opens its store: a post-write command is someone else's program and needs
 * the output file, not the master key or the database password.
 */
function withoutStoreSecrets(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const out = { ...env };
  delete out['DROPKEY_MASTER_KEY'];
  delete out['DROPKEY_DATABASE_URL'];
  return out;
}
