/** Small output helpers shared by commands: JSON, aligned tables, human durations. */
import type { CommandContext } from './context.js';

/**
 * Characters a terminal acts on instead of showing: C0 controls but tab and newline (ESC starts "ESC ] 52" clipboard
 * writes and title changes), DEL, the C1 controls (U+009B is a one-byte CSI), and the bidirectional overrides that
 * reorder what is shown. Account, team and error texts come from Dropbox (or whatever answers in its place), so none
 * of them may reach a terminal raw.
 */
const TERMINAL_CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** Text for a terminal: control characters removed; tabs and line breaks kept (messages with a hint line). */
export function terminalSafe(text: string): string {
  return text.replace(TERMINAL_CONTROLS, '');
}

/** A value shown on one line (a table cell, a name): control characters removed, tabs and line breaks become spaces. */
export function oneLineSafe(text: string): string {
  return terminalSafe(text).replace(/[\t\n]/g, ' ');
}

/**
 * JSON.stringify escapes C0 controls but writes DEL, the C1 controls and U+2028/U+2029 raw; escaping them too keeps
 * the same data while no raw control reaches a terminal that shows the output.
 */
export function writeJson(ctx: Pick<CommandContext, 'stdout'>, value: unknown): void {
  const text = JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  ctx.stdout.write(`${text}\n`);
}

/** A left-aligned text table; empty cells print as "-". Cells are made safe for a terminal, on one line each. */
export function table(headers: string[], rows: Array<Array<string | null | undefined>>): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : oneLineSafe(c))))];
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
