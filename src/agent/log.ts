/**
 * The agent's log: the project's pino logger (src/server/logger.ts, which redacts secrets and masks token-shaped
 * text), written as JSON lines for journald, Docker and Kubernetes, or as plain lines on a terminal.
 */
import type { Writable } from 'node:stream';
import { createLogger } from '../server/logger.js';

export interface AgentLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export type LogFormat = 'json' | 'text';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const OMIT = new Set(['level', 'time', 'msg', 'service', 'component', 'pid', 'hostname']);

/** One pino JSON line as `time LEVEL message (key=value, ...)`. */
export function plainLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const extras = Object.entries(o)
    .filter(([k, v]) => !OMIT.has(k) && v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const level = (LEVELS[Number(o['level'])] ?? String(o['level'])).padEnd(5);
  return `${String(o['time'] ?? '')} ${level} ${String(o['msg'] ?? '')}${extras.length ? ` (${extras.join(', ')})` : ''}\n`;
}

export function createAgentLogger(o: { stream: Writable; format: LogFormat; level?: string }): AgentLogger {
  const destination =
    o.format === 'json'
      ? { write: (s: string) => void o.stream.write(s) }
      : { write: (s: string) => void o.stream.write(s.split('\n').filter(Boolean).map(plainLine).join('')) };
  const base = createLogger({ level: o.level ?? 'info', destination });
  const logger = base.child({ component: 'agent' });
  return {
    debug: (obj, msg) => logger.debug(obj, msg),
    info: (obj, msg) => logger.info(obj, msg),
    warn: (obj, msg) => logger.warn(obj, msg),
    error: (obj, msg) => logger.error(obj, msg),
  };
}
