/**
 * Checks of what people type or paste into the facade (app secrets, codes, tokens, scope lists): a clear
 * DROPKEY_BAD_INPUT saying what to do next, before anything reaches Dropbox or the store.
 */
import { type ExpectedToken, normalizePastedToken } from '../dropbox/token-shape.js';
import { DropkeyError, ErrorCodes } from '../errors.js';

export function cleanSecretInput(value: string, what: string, token?: ExpectedToken): string {
  // Pasted values often carry a newline, spaces or quotes along; those are never part of a Dropbox token. A token
  // may also come as "Bearer …", NAME=… or inside a token JSON: normalizePastedToken strips all of that.
  let cleaned: string;
  let innerSpace: boolean;
  if (token === undefined) {
    cleaned = value.trim().replace(/^(["'])(.*)\1$/s, '$2').trim();
    innerSpace = /\s/.test(cleaned);
  } else {
    const n = normalizePastedToken(value, token);
    cleaned = n.value;
    innerSpace = n.stripped.includes('token.inner_whitespace');
  }
  if (cleaned === '') throw new DropkeyError(ErrorCodes.BAD_INPUT, `The ${what} is empty.`, { hint: `Paste the ${what} again.` });
  if (innerSpace) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `The ${what} contains spaces or line breaks, so it was pasted incompletely or with extra text.`, {
      hint: `Copy the ${what} again, alone, and paste it (use "-" to read it from standard input).`,
    });
  }
  return cleaned;
}

export function validateScopes(scopes: unknown): string[] {
  if (scopes === undefined) return [];
  if (!Array.isArray(scopes)) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Scopes must be a list of scope names.');
  const out: string[] = [];
  for (const s of scopes) {
    // Allow comma- or space-separated lists in one value (`--scope "files.content.read files.metadata.read"`).
    for (const part of String(s).split(/[\s,]+/)) {
      if (part === '') continue;
      if (!/^[a-z][a-z0-9_.:]*$/i.test(part)) {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, `Invalid scope name ${JSON.stringify(part)}.`, {
          hint: 'Use Dropbox scope names such as files.content.read or account_info.read (App Console, Permissions tab).',
        });
      }
      if (!out.includes(part)) out.push(part);
    }
  }
  return out;
}
