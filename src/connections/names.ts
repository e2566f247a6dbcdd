import { DropkeyError, ErrorCodes } from '../errors.js';

/**
 * App and connection names are ids that travel into shell commands, env var names (Airflow's
 * `dropbox_default`), rclone section headers and URLs, so they are kept to a safe alphabet.
 */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const DEFAULT_CONNECTION = 'default';

export function validateName(kind: 'app' | 'connection', name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `The ${kind} name is missing.`, {
      hint: kind === 'app' ? 'Give one with --name, e.g. --name backup.' : 'Give one with --connection, e.g. --connection default.',
    });
  }
  if (!NAME_PATTERN.test(name)) {
    // The name is user input, not a secret, but it may be long or hold control characters: quote it safely.
    const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `Invalid ${kind} name ${shown}.`, {
      hint:
        `${kind === 'app' ? 'An' : 'A'} ${kind} name starts with a letter or digit and uses only letters, digits, "_", "." and "-" ` +
        `(at most 64 characters), e.g. ${kind === 'app' ? 'backup' : 'dropbox_default'}.`,
      details: { kind },
    });
  }
  return name;
}
