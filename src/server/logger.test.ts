import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from './logger.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: createLogger({ destination }), text: () => lines.join('') };
}

test('secrets in logged objects are redacted by key, token shapes by value', () => {
  const { logger, text } = capture();
  const csrf = 'csrf-value-Zq8wT3mN5pL2xR7v';
  logger.info(
    {
      session: { idHash: 'a'.repeat(64), csrfToken: csrf },
      form: { _csrf: csrf, setup_token: 'setup-value-Kp3nQ8', linkToken: 'link-value-Wm2rT6' },
      request: { code: 'oauth-code-value', state: 'oauth-state-value', api_key: 'x' },
      note: `key dk_${'A'.repeat(43)} and sl.${'B'.repeat(60)}`,
      tokenHandouts: 3,
    },
    'with secrets',
  );
  const out = text();
  for (const secret of [csrf, 'setup-value-Kp3nQ8', 'link-value-Wm2rT6', 'oauth-code-value', 'oauth-state-value', 'A'.repeat(43), 'B'.repeat(60)]) {
    assert.ok(!out.includes(secret), `${secret} leaked: ${out}`);
  }
  const logged = JSON.parse(out) as { tokenHandouts: number; session: { idHash: string } };
  assert.equal(logged.tokenHandouts, 3, 'counters named token* stay');
  assert.equal(logged.session.idHash, 'a'.repeat(64));
});
