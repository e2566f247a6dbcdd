/** Small output helpers shared by commands: JSON, aligned tables, human durations. */
import type { CommandContext } from './context.js';

export function writeJson(ctx: Pick<CommandContext, 'stdout'>, value: unknown): void {
  ctx.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A left-aligned text table; empty cells print as "-". */
export function table(headers: string[], rows: Array<Array<string | null | undefined>>): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return `${cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : (c ?? '').padEnd(widths[i]!))).join('  ').trimEnd()).join('\n')}\n`;
}

/** "3h 59m", "12m 5s", "45s", "expired 2m ago". */
export function expiresIn(expiresAt: number | null, now: number): string {
  if (expiresAt === null) return 'unknown';
  const s = Math.round((expiresAt - now) / 1000);
  return s <= 0 ? `expired ${duration(-s)} ago` : duration(s);
}

export function duration(totalSeconds: number): string {
  const s = Math.max(0, Math.round(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** Quotes an argument for a copy-pasteable shell command (only when needed). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
