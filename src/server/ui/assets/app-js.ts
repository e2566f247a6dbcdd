/**
 * The UI's one script, served from /ui/assets/app.js (the CSP forbids inline script). Every page works without
 * it; it adds: the popup connect flow (the popup is opened synchronously in the submit handler, which runs on the
 * user's click, so popup blockers allow it), live list updates when the popup reports back, confirm dialogs,
 * copy buttons and ticking expiry countdowns. Kept as a string constant so `tsc` ships it with the server.
 */
export const APP_JS = String.raw`(function () {
  'use strict';
  var meta = function (name) { var m = document.querySelector('meta[name="' + name + '"]'); return m ? m.getAttribute('content') : ''; };
  var csrf = meta('csrf-token');
  var serverNow = Date.parse(meta('server-time'));
  var skew = isNaN(serverNow) ? 0 : serverNow - Date.now();

  function notice(kind, text) {
    var box = document.getElementById('notices');
    if (!box) return;
    var div = document.createElement('div');
    div.className = 'notice notice-' + kind;
    div.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    div.textContent = text;
    box.appendChild(div);
  }

  // ---- expiry countdowns
  function duration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d > 0) return d + ' d ' + h + ' h';
    if (h > 0) return h + ' h ' + m + ' min';
    if (m > 0) return m + ' min ' + (s % 60) + ' s';
    return s + ' s';
  }
  // One timer for the page; it writes only the countdowns whose text changed (a listing shows one page of rows),
  // and does nothing while the tab is hidden.
  var countdowns = [];
  function collect() { countdowns = Array.prototype.slice.call(document.querySelectorAll('time.countdown[datetime]')); }
  function tick() {
    if (document.hidden) return;
    var now = Date.now() + skew;
    for (var i = 0; i < countdowns.length; i++) {
      var el = countdowns[i];
      var at = el._at === undefined ? (el._at = Date.parse(el.getAttribute('datetime'))) : el._at;
      if (isNaN(at)) continue;
      var text = at <= now ? 'expired' : 'in ' + duration(at - now);
      if (el.textContent !== text) el.textContent = text;
    }
  }
  collect();
  tick();
  if (countdowns.length) setInterval(tick, 1000);
  document.addEventListener('visibilitychange', tick);

  // ---- copy buttons
  document.addEventListener('click', function (e) {
    var b = e.target.closest ? e.target.closest('[data-copy]') : null;
    if (!b) return;
    var input = document.querySelector(b.getAttribute('data-copy'));
    if (!input) return;
    var done = function () {
      var label = b.textContent;
      b.textContent = 'Copied';
      setTimeout(function () { b.textContent = label; }, 2000);
    };
    var fallback = function () { input.select(); try { document.execCommand('copy'); done(); } catch (err) { /* the text stays selected for Ctrl+C */ } };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(input.value).then(done, fallback);
    else fallback();
  });

  // ---- live connection rows
  function refreshRows() {
    var body = document.querySelector('tbody[data-fragment]');
    if (!body) return Promise.resolve(false);
    return fetch(body.getAttribute('data-fragment'), { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (html) { body.innerHTML = html; collect(); tick(); return true; });
  }

  // ---- popup connect
  var popup = null;
  var watcher = null;
  var finished = false;
  var waiting = null;
  // While the Dropbox window is open: a status line, the connect buttons disabled (no second window).
  function setWaiting(on) {
    var buttons = document.querySelectorAll('form[data-popup-connect] button[type=submit]');
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = on;
    if (on && !waiting) {
      var box = document.getElementById('notices');
      if (!box) return;
      waiting = document.createElement('div');
      waiting.className = 'notice notice-info waiting';
      waiting.setAttribute('role', 'status');
      waiting.setAttribute('data-waiting', '');
      var text = document.createElement('span');
      text.textContent = 'Waiting for Dropbox\u2026 Sign in and click Allow in the Dropbox window. ';
      var show = document.createElement('button');
      show.type = 'button';
      show.className = 'link';
      show.textContent = 'Show the window';
      show.addEventListener('click', function () { if (popup && !popup.closed) popup.focus(); });
      waiting.appendChild(text);
      waiting.appendChild(show);
      box.appendChild(waiting);
    } else if (!on && waiting) {
      waiting.parentNode.removeChild(waiting);
      waiting = null;
    }
  }
  function watch() {
    clearInterval(watcher);
    watcher = setInterval(function () {
      if (!popup || popup.closed) {
        clearInterval(watcher);
        // The popup posts its result and closes at once; the message may still be queued: give it a moment.
        setTimeout(function () {
          if (finished) return;
          setWaiting(false);
          notice('error', 'The Dropbox window was closed before the connection was made. Nothing was changed; click Connect to try again.');
        }, 1500);
      }
    }, 500);
  }
  window.addEventListener('message', function (ev) {
    if (ev.origin !== window.location.origin) return;
    var d = ev.data;
    if (!d || d.source !== 'dropkey-oauth') return;
    finished = true;
    clearInterval(watcher);
    setWaiting(false);
    if (d.ok) {
      notice('ok', 'Dropbox is connected as "' + d.connection + '"' + (d.email ? ' (' + d.email + ')' : '') + '.');
      refreshRows().then(function (had) { if (!had) window.location.reload(); }, function () { window.location.reload(); });
    } else {
      notice('error', 'Not connected: ' + ((d.error && d.error.message) || 'Dropbox did not finish the sign-in.'));
    }
  });

  function startPopup(form) {
    popup = window.open('', 'dropkey-connect', 'popup,width=760,height=780');
    if (!popup) return false;
    finished = false;
    setWaiting(true);
    var body = new URLSearchParams(new FormData(form));
    body.set('mode', 'popup');
    fetch(form.getAttribute('action'), {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-CSRF-Token': csrf },
      body: body
    })
      .then(function (r) {
        // Errors from the server's boundary (CSRF, signed out) come as HTML: say what happened in words.
        return r.json().then(function (j) { return { ok: r.ok, j: j }; }, function () {
          return { ok: false, j: { error: { message: 'Could not start connecting (HTTP ' + r.status + '). Reload the page and try again.' } } };
        });
      })
      .then(function (res) {
        if (!res.ok || !res.j || !res.j.authorize_url) {
          popup.close();
          setWaiting(false);
          notice('error', (res.j && res.j.error && res.j.error.message) || 'Could not start connecting.');
          return;
        }
        popup.location.href = res.j.authorize_url;
        watch();
      })
      .catch(function () {
        if (popup) popup.close();
        setWaiting(false);
        notice('error', 'Could not start connecting. Check your network and try again.');
      });
    return true;
  }

  document.addEventListener('submit', function (e) {
    var form = e.target;
    if (form.hasAttribute('data-confirm')) {
      if (!window.confirm(form.getAttribute('data-confirm'))) { e.preventDefault(); return; }
      var c = document.createElement('input');
      c.type = 'hidden'; c.name = 'confirmed'; c.value = 'yes';
      form.appendChild(c);
    }
    if (form.hasAttribute('data-popup-connect')) {
      if (!form.reportValidity()) { e.preventDefault(); return; }
      // Popup blocked: let the form submit normally (mode=redirect), a full-page round trip to Dropbox.
      if (startPopup(form)) e.preventDefault();
    }
  });
})();
`;
