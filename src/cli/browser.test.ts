import { test } from 'node:test';
import assert from 'node:assert/strict';
import { browserCommand } from './browser.js';

const url = 'http://127.0.0.1:1/oauth2/authorize?a=1&b=2';

test('$BROWSER wins, with %s substitution and the first of a colon list', () => {
  assert.deepEqual(browserCommand(url, { env: { BROWSER: 'firefox --new-tab %s:chromium' }, platform: 'linux' }), { cmd: 'firefox', args: ['--new-tab', url] });
  assert.deepEqual(browserCommand(url, { env: { BROWSER: 'w3m' }, platform: 'linux' }), { cmd: 'w3m', args: [url] });
});

test('Linux with no display and no $BROWSER opens nothing', () => {
  assert.equal(browserCommand(url, { env: {}, platform: 'linux' }), undefined);
  assert.deepEqual(browserCommand(url, { env: { DISPLAY: ':0' }, platform: 'linux' }), { cmd: 'xdg-open', args: [url] });
  assert.deepEqual(browserCommand(url, { env: { WAYLAND_DISPLAY: 'wayland-0' }, platform: 'linux' })?.cmd, 'xdg-open');
});

test('macOS and Windows openers', () => {
  assert.deepEqual(browserCommand(url, { env: {}, platform: 'darwin' }), { cmd: 'open', args: [url] });
  assert.deepEqual(browserCommand(url, { env: {}, platform: 'win32' }), { cmd: 'cmd', args: ['/c', 'start', '""', url.replace('&', '^&')] });
});
