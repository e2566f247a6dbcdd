/**
 * Opening the consent page in the user's browser, the way `gh auth login` and `rclone config` do: $BROWSER first
 * (the xdg convention: a ':'-separated list, "%s" replaced by the URL), else the platform opener. On Linux with no
 * display and no $BROWSER there is nothing to open: the caller prints the URL (it always does).
 */
import { spawn } from 'node:child_process';

export interface OpenerEnv {
  env: Record<string, string | undefined>;
  platform: NodeJS.Platform;
}

/** The command that would open `url`, or undefined when no browser is reachable. Exported for tests. */
export function browserCommand(url: string, { env, platform }: OpenerEnv): { cmd: string; args: string[] } | undefined {
  const browser = env['BROWSER']?.split(':').map((s) => s.trim()).find(Boolean);
  if (browser) {
    if (browser === 'none' || browser === 'false') return undefined;
    const parts = browser.split(/\s+/);
    const hasPlaceholder = parts.some((p) => p.includes('%s'));
    const args = parts.slice(1).map((p) => p.replace('%s', url));
    return { cmd: parts[0]!, args: hasPlaceholder ? args : [...args, url] };
  }
  if (platform === 'darwin') return { cmd: 'open', args: [url] };
  if (platform === 'win32') return { cmd: 'cmd', args: ['/c', 'start', '""', url.replace(/&/g, '^&')] };
  if (!env['DISPLAY'] && !env['WAYLAND_DISPLAY']) return undefined;
  return { cmd: 'xdg-open', args: [url] };
}

/**
 * Starts the browser without waiting for it. Resolves true if the opener started, false if it could not
 * (missing xdg-open...). Never throws: the URL is printed anyway.
 */
export function openBrowser(url: string, opener: OpenerEnv): Promise<boolean> {
  const c = browserCommand(url, opener);
  if (!c) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      const child = spawn(c.cmd, c.args, { detached: true, stdio: 'ignore', env: opener.env as NodeJS.ProcessEnv });
      child.once('error', () => resolve(false));
      child.once('spawn', () => {
        child.unref();
        resolve(true);
      });
    } catch {
      resolve(false);
    }
  });
}
