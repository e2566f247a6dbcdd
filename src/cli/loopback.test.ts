import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startCallbackServer } from './loopback.js';
import { CALLBACK_PATH } from './config.js';

test('a stray request with a wrong or missing state gets a 400 page and the login keeps waiting', async () => {
  const ac = new AbortController();
  const cb = await startCallbackServer({ port: 0, timeoutMs: 60_000, signal: ac.signal });
  try {
    let settled = false;
    const code = cb.waitForCode('the-state');
    code.then(() => (settled = true), () => (settled = true));
    const base = `http://127.0.0.1:${cb.port}${CALLBACK_PATH}`;
    // What any web page can make a browser send (an <img> tag): wrong state, no state, a forged error.
    for (const q of ['?code=attacker&state=wrong', '?code=attacker', '', '?error=access_denied&state=nope', '?error=server_error']) {
      const res = await fetch(`${base}${q}`);
      assert.equal(res.status, 400, q);
      const html = await res.text();
      assert.match(html, /does not belong to this login/, q);
      assert.match(html, /still waiting/i, q);
    }
    await new Promise((r) => setImmediate(r));
    assert.equal(settled, false, 'the login is still waiting');
    // The real redirect still gets through.
    const real = fetch(`${base}?code=the-code&state=the-state`);
    assert.equal(await code, 'the-code');
    cb.finish({ ok: true, message: 'connected as a@example.com' });
    assert.equal((await real).status, 200);
  } finally {
    await cb.close();
  }
});

test('the right state with an error ends the login (the user cancelled at Dropbox)', async () => {
  const ac = new AbortController();
  const cb = await startCallbackServer({ port: 0, timeoutMs: 60_000, signal: ac.signal });
  try {
    const code = cb.waitForCode('s1');
    const res = await fetch(`http://127.0.0.1:${cb.port}${CALLBACK_PATH}?error=access_denied&state=s1`);
    assert.equal(res.status, 400);
    await assert.rejects(code, /access_denied/);
  } finally {
    await cb.close();
  }
});

test('the result page escapes Dropbox-supplied text with the server\'s html helper, keeping its own markup', async () => {
  const ac = new AbortController();
  const cb = await startCallbackServer({ port: 0, timeoutMs: 60_000, signal: ac.signal });
  try {
    const code = cb.waitForCode('s2');
    const res = fetch(`http://127.0.0.1:${cb.port}${CALLBACK_PATH}?code=c&state=s2`);
    assert.equal(await code, 'c');
    const hostile = '<img src=x onerror=alert(1)>"\'&';
    cb.finish({ ok: false, message: `Dropbox said ${hostile}`, advice: [`try ${hostile}`] });
    const page = await (await res).text();
    assert.doesNotMatch(page, /<img/);
    assert.ok(page.includes('<p id="message">Dropbox said &lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;.</p>'), page);
    assert.ok(page.includes('<p class="advice">Try &lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;.</p>\n'), page);
    assert.ok(page.includes('<h1 id="result" data-ok="false">&#10007; Dropbox login failed</h1>'), page);
  } finally {
    await cb.close();
  }
});
