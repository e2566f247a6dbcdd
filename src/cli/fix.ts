/**
 * The CLI's rendering of a Fix (src/errors.ts): the command line that does it. Lower layers say what fixes a
 * problem as data; only this file knows how that is spelled on the command line. Names are restricted to
 * [A-Za-z0-9_.-] (connections/names.ts) and scopes to [a-z0-9_.:], so they need no shell quoting; a name the
 * fix leaves open is shown as an upper-case placeholder.
 */
import type { Fix } from '../errors.js';

const opt = (flag: string, value: string | undefined): string => (value === undefined ? '' : ` ${flag} ${value}`);

/** The command (or commands, joined by "; ") that carries out `fix`. */
export function fixCommand(fix: Fix): string {
  switch (fix.action) {
    case 'login':
      return `dropkey login${opt('--connection', fix.connection)}${opt('--app', fix.app)}${(fix.addScopes ?? []).map((s) => ` --add-scope ${s}`).join('')}`;
    case 'import':
      return `dropkey import --connection ${fix.connection ?? 'NAME'} --app ${fix.app ?? 'APP'} --${fix.token}-token -`;
    case 'token':
      return `dropkey token${opt('--connection', fix.connection)}`;
    case 'doctor':
      return fix.token ? 'dropkey doctor --token -' : `dropkey doctor${opt('--connection', fix.connection)}`;
    case 'list-connections':
      return 'dropkey list';
    case 'revoke':
      return fix.connections.map((c) => `dropkey revoke --connection ${c}${fix.force ? ' --force' : ''}`).join('; ');
    case 'app-add':
      return `dropkey app add --name ${fix.app ?? 'NAME'} --key APP_KEY --secret -${fix.team ? ' --team' : ''}`;
    case 'app-update': {
      const flag = { secret: '--secret -', key: '--key APP_KEY', team: '--team', user: '--no-team' }[fix.field];
      return `dropkey app update --name ${fix.app} ${flag}`;
    }
    case 'app-remove':
      return `dropkey app remove ${fix.app}`;
    case 'list-apps':
      return 'dropkey app list';
    case 'apikey-create': {
      const connection = fix.connection === undefined ? 'NAME' : fix.connection === '*' ? '"*"' : fix.connection;
      return `dropkey apikey create --name NAME --permission ${fix.permission ?? 'token:read'} --connection ${connection}`;
    }
    case 'apikey-revoke':
      return `dropkey apikey revoke ${fix.name}`;
    case 'list-apikeys':
      return 'dropkey apikey list';
  }
}

/** The lines the CLI prints under an error or a doctor finding: the hint, then the command. */
export function adviceLines(advice: { hint?: string | undefined; fix?: Fix | undefined }): string[] {
  const lines = advice.hint ? advice.hint.split('\n') : [];
  if (advice.fix) lines.push(`Run: ${fixCommand(advice.fix)}`);
  return lines;
}

/** The advice on one line: the hint, then the command (a doctor finding's `fix` in `dropkey doctor --json`). */
export function adviceText(advice: { hint?: string | undefined; fix?: Fix | undefined }): string {
  const command = advice.fix ? `run: ${fixCommand(advice.fix)}` : undefined;
  return [advice.hint, command].filter((x) => x).join('; ');
}
