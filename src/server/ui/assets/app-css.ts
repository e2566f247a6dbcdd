/** The UI stylesheet, served from /ui/assets/app.css (the CSP forbids inline style). */
export const APP_CSS = `
:root { --fg: #1e1919; --muted: #637282; --line: #d9dde3; --bg: #f7f8fa; --card: #fff; --blue: #0061fe; --blue-d: #0050d0;
  --ok: #1c7c3c; --ok-bg: #e7f5ec; --err: #b3261e; --err-bg: #fdecea; --warn: #8a5a00; --warn-bg: #fff4dc; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--blue); }
code { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #eef1f5; padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
header.top { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #fff; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
.brand { font-weight: 700; font-size: 18px; color: var(--fg); text-decoration: none; }
header nav { display: flex; flex: 1; align-items: center; justify-content: space-between; gap: 16px; flex-wrap: wrap; }
header nav ul { display: flex; gap: 4px; list-style: none; margin: 0; padding: 0; flex-wrap: wrap; }
header nav a { display: block; padding: 6px 10px; border-radius: 6px; text-decoration: none; color: var(--fg); }
header nav a:hover { background: var(--bg); }
header nav a[aria-current="page"] { background: #e8f0fe; color: var(--blue-d); font-weight: 600; }
.signout { display: flex; align-items: center; gap: 8px; color: var(--muted); font-size: 14px; }
main { max-width: 1080px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 8px 0 16px; }
h2 { font-size: 18px; margin: 0 0 8px; }
.narrow { max-width: 420px; margin: 40px auto; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 20px; margin: 16px 0; }
.crumbs { margin: 0; color: var(--muted); }
form.stack { display: flex; flex-direction: column; gap: 6px; }
form.stack > button { align-self: flex-start; margin-top: 8px; }
form.inline { display: inline-flex; flex-wrap: wrap; align-items: flex-end; gap: 10px; margin: 4px 8px 4px 0; }
form.inline label { display: flex; flex-direction: column; font-size: 13px; color: var(--muted); gap: 2px; }
label.check { display: block; margin: 2px 0; color: var(--fg); font-size: 14px; }
label.check small, label small { color: var(--muted); }
input[type=text], input[type=email], input[type=password], input[type=number], input:not([type]), select {
  font: inherit; padding: 7px 10px; border: 1px solid #b9c0c9; border-radius: 6px; background: #fff; min-width: 0; }
input.short { width: 6em; }
input:focus-visible, select:focus-visible, button:focus-visible, a:focus-visible { outline: 3px solid #8ab4ff; outline-offset: 1px; }
fieldset { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; margin: 8px 0; }
legend { font-weight: 600; padding: 0 4px; }
.scopes-box { max-height: 320px; overflow: auto; }
button { font: inherit; padding: 7px 14px; border: 1px solid #b9c0c9; border-radius: 6px; background: #fff; cursor: pointer; }
button:hover { background: var(--bg); }
button.primary { background: var(--blue); border-color: var(--blue); color: #fff; font-weight: 600; }
button.primary:hover { background: var(--blue-d); }
button.danger { color: var(--err); border-color: #e3a19c; }
button.danger:hover { background: var(--err-bg); }
button.small { padding: 3px 8px; font-size: 13px; }
button.link { border: 0; background: none; color: var(--blue); padding: 0; text-decoration: underline; }
button[disabled] { opacity: .5; cursor: not-allowed; }
table.list { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); border-radius: 10px; overflow: hidden; margin: 16px 0; }
table.list caption { text-align: left; color: var(--muted); padding: 0 0 6px; caption-side: top; }
table.list th, table.list td { text-align: left; padding: 9px 12px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.list th { background: #f0f2f5; font-size: 13px; color: var(--muted); font-weight: 600; }
table.list tr:last-child td { border-bottom: 0; }
table.list tr.empty td { color: var(--muted); text-align: center; padding: 20px; }
table.list tr.revoked td { color: var(--muted); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.details { font-size: 13px; color: var(--muted); overflow-wrap: break-word; word-break: normal; min-width: 14em; }
/* Audit cells wrap between words (a column never shrinks to one letter per line); one key=value stays whole when it fits. */
table.audit td, table.audit code { overflow-wrap: break-word; word-break: normal; }
table.audit td.when { white-space: nowrap; }
span.kv { display: inline-block; max-width: 100%; overflow-wrap: anywhere; margin-right: .6em; }
code.word { overflow-wrap: normal; white-space: nowrap; }
.badge.not-renewable { background: var(--warn-bg); color: var(--warn); }
.muted { color: var(--muted); }
form.search { margin: 16px 0 0; }
nav.pager { margin: 8px 0 16px; }
pre.snippet { background: #f4f6f9; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; overflow-x: auto; max-width: 100%; font-size: 13px; }
pre.snippet code { background: none; padding: 0; overflow-wrap: normal; }
h3 { font-size: 15px; margin: 12px 0 4px; }
.notice.waiting { display: flex; flex-wrap: wrap; gap: 4px 8px; align-items: baseline; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; padding: 2px 8px; border-radius: 999px; vertical-align: middle; }
.state-active { background: var(--ok-bg); color: var(--ok); }
.state-needs_reauth { background: var(--warn-bg); color: var(--warn); }
.state-revoked { background: var(--err-bg); color: var(--err); }
.notice { padding: 10px 14px; border-radius: 8px; margin: 0 0 12px; border: 1px solid; }
.notice-ok { background: var(--ok-bg); border-color: #b5dcc2; color: #114d25; }
.notice-error { background: var(--err-bg); border-color: #f1b8b3; color: #7a1a14; }
.notice-info { background: #e8f0fe; border-color: #b8cdf8; color: #173d7a; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 20px; background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 20px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
ul.scopes { margin: 0; padding: 0; list-style: none; display: flex; flex-wrap: wrap; gap: 4px; }
.last-error { color: var(--err); }
.copy-row { display: flex; gap: 8px; margin: 8px 0; }
.copy-row input { flex: 1; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.once { border-color: #f0c36d; background: #fffaf0; }
ol.checklist li { margin: 6px 0; }
details summary { cursor: pointer; color: var(--blue); margin: 8px 0; }
.hint { color: var(--muted); }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (max-width: 700px) {
  dl.facts { grid-template-columns: 1fr; } table.list { font-size: 14px; } main { padding: 12px; }
  header.top { padding: 8px 12px; gap: 8px; }
  .copy-row { flex-wrap: wrap; } .copy-row input { min-width: 0; width: 100%; }
  input, select { max-width: 100%; }
  form.inline { display: flex; }
  /* On a phone every table is a list of cards: one row per card, one cell per line, labelled from data-label. */
  table.list, table.list tbody, table.list tr, table.list td, table.list caption { display: block; width: 100%; }
  table.list thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  table.list tr { border-bottom: 1px solid var(--line); padding: 6px 0; }
  table.list td { border-bottom: 0; padding: 3px 12px; text-align: left; }
  table.list td.num { text-align: left; }
  table.list td[data-label]::before { content: attr(data-label); display: block; font-size: 12px; color: var(--muted); }
  table.audit td.when { white-space: normal; }
  td.details { min-width: 0; }
}
`;
