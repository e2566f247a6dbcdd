// Comments and docs cite public sources or files in this repository, never notes that live outside it (the
// "dropbox-api.md §N" contract notes, the style notes, "issue N" of the tracker). This lists such citations, and with --fix rewrites
// them: a Dropbox section becomes the public Dropbox page it summarizes, an issue becomes the guide in docs/ that
// documents what it asked for.
//
//   node scripts/citations.mjs          lists what is left (exit 1 if anything is)
//   node scripts/citations.mjs --fix    rewrites in place, then lists what it could not
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const DOC = 'https://www.dropbox.com/developers/documentation/http/documentation';
const OAUTH = 'https://developers.dropbox.com/oauth-guide';
const SDK = 'https://github.com/dropbox/dropbox-sdk-js';
/** Each section of the notes: the public page it summarizes, and a short name for a bare "§N" later in a file. */
const SECTIONS = {
  0: [DOC, 'Dropbox HTTP docs: hosts'],
  1: [OAUTH, 'Dropbox OAuth guide'],
  1.1: [`${DOC}#oauth2-authorize`, 'Dropbox docs: oauth2/authorize'],
  1.2: [`${DOC}#oauth2-token`, 'Dropbox docs: oauth2/token'],
  1.3: [OAUTH, 'Dropbox OAuth guide: token lifetimes'],
  1.4: [OAUTH, 'Dropbox OAuth guide: PKCE'],
  1.5: [`${DOC}#auth-token-revoke`, 'Dropbox docs: auth/token/revoke'],
  2: [`${DOC}#users-get_current_account`, 'Dropbox docs: users routes'],
  3: [DOC, 'Dropbox HTTP docs: formats'],
  3.1: [DOC, 'Dropbox HTTP docs: JSON'],
  3.2: [DOC, 'Dropbox HTTP docs: request styles and headers'],
  3.3: [`${DOC}#error-handling`, 'Dropbox docs: errors'],
  3.4: ['https://www.dropbox.com/developers/reference/data-ingress-guide', 'Dropbox data ingress guide: rate limits'],
  4: [DOC, 'Dropbox docs: files routes'],
  4.1: ['https://www.dropbox.com/developers/reference/content-hash', 'Dropbox content hash reference'],
  5: ['https://www.dropbox.com/developers/documentation/http/teams', 'Dropbox Business API docs'],
  6: [`${OAUTH}#dropbox-api-permissions`, 'Dropbox OAuth guide: scopes'],
  7: [SDK, 'dropbox-sdk-js'],
  7.2: [SDK, 'dropbox-sdk-js'],
  7.3: [SDK, 'dropbox-sdk-js'],
  7.4: [SDK, 'dropbox-sdk-js'],
  7.6: [SDK, 'dropbox-sdk-js'],
  8: ['https://github.com/dropbox/dropbox-sdk-python', 'dropbox-sdk-python'],
  10: ['docs/emulator.md ("Pointing clients at it")', 'docs/emulator.md'],
};

const NUM = String.raw`\d+(?:\.\d+)?(?!\d|\.\d)`;
const LIST = String.raw`§\s?${NUM}(?:(?:,\s*|/|-|–|\s+and\s+)§?\s?${NUM})*`;
/** "../shared/dropbox-api.md §1.2, §1.3", with or without sections. */
const CITE = new RegExp(String.raw`\`?(?:\.\.\/)?(?:shared\/)?dropbox-api\.md\`?(?:\s*(${LIST}))?`, 'g');
/** A bare "§1.2" or "§3.3-3.4" that is not a section of an RFC or a standard named just before it. */
const BARE = new RegExp(String.raw`(?<!(?:RFC \d+,?|SP 800-\d+\w?|[Ii]ssue #?\d+,?|\.stone|spec)\s?)§\s?(${NUM}(?:(?:/|-|–)§?${NUM})?)`, 'g');

function sections(list) {
  const out = [];
  for (const n of list.match(new RegExp(NUM, 'g')) ?? []) {
    const s = SECTIONS[n] ?? SECTIONS[n.split('.')[0]];
    if (!s) throw new Error(`no public source for §${n}`);
    out.push(s);
  }
  return out;
}
const join = (xs) => [...new Set(xs)].join(', ');

/** The tracker's issues, by the guide that documents what each asked for (longest patterns first). */
const ISSUES = [
  [/issue #?2(?:,? items? \d+(?: and \d+)?|,? "What it must (?:do|show)"(?: §\d+(?:\/§?\d+)?)?| §\d+(?:\/§?\d+)?)?/gi, 'docs/emulator.md'],
  [/the headline of issue 3/gi, 'the headline of src/connections/README.md ("Refresh rules")'],
  [/issue 3 (?:item |§)5/gi, 'src/connections/README.md ("Refresh rules")'],
  [/issue 3 (?:item |§)6/gi, 'docs/connecting-an-app.md ("When something goes wrong")'],
  [/issue 3/gi, 'docs/decisions/0001-encryption-at-rest.md'],
  [/issue 4 §2(?:, §8)?(?: "Connect links", §3)?/gi, 'docs/web-ui.md'],
  [/issue 4 §3/gi, 'docs/api.md'],
  [/issue 4 §4/gi, 'docs/proxy.md'],
  [/issue 4 §5(?:-6)?(?:, issue 5 §3)?/gi, 'docs/webhooks.md'],
  [/issue 4 §6/gi, 'docs/webhooks.md'],
  [/issue 4 §8/gi, 'docs/web-ui.md ("Security")'],
  [/issue 4's benchmark/gi, 'bench/serve-token.mjs'],
  [/issue 4,? "What it must show"/gi, 'docs/proxy.md ("Throughput")'],
  [/issue 4(?=:)/gi, 'docs/web-ui.md'],
  [/issue 4/gi, 'docs/deploying.md'],
  [/issue 5 §3/gi, 'docs/deploying.md ("What the cluster guarantees")'],
  [/issue 5 §4/gi, 'docs/decisions/0003-key-rotation.md'],
  [/issue 5 §5/gi, 'docs/deploying.md ("What the cluster guarantees")'],
  [/issue 5,? "What it must show"(?: #\d)?/gi, 'docs/deploying.md ("What the cluster guarantees")'],
  [/issue 5's/gi, 'the cluster set-up\'s'],
  [/issue 5/gi, 'docs/decisions/0002-postgres-store.md'],
];

export function rewrite(text, file = '') {
  let t = text;
  // The decision records tell their own history in words: their issue mentions are rewritten by hand.
  if (!file.startsWith('docs/')) for (const [re, to] of ISSUES) t = t.replace(re, to);
  t = t.replace(CITE, (_m, list) => (list ? join(sections(list).map((s) => s[0])) : DOC));
  // A bare section number (not an RFC's) is a section of the notes: name the public page instead.
  t = t.replace(BARE, (_m, list) => join(sections(list).map((s) => s[1])));
  // A guide that would now cite itself: drop the parenthesis.
  if (file) t = t.replace(new RegExp(String.raw` \(${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(?: \("[^"]*"\))?\)`, 'g'), '');
  return t;
}

/** What is left: lines citing the notes or an issue. */
export function leftovers(text) {
  const bare = new RegExp(BARE.source);
  return text.split('\n').flatMap((line, i) => (/dropbox-api\.md|\bissue #?\d|\bstyle\.md/i.test(line) || bare.test(line) ? [`${i + 1}: ${line.trim()}`] : []));
}

const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', 'src', 'test', 'bench', 'scripts', 'docs', 'README.md'], { encoding: 'utf8' })
  .split('\n')
  .filter((f) => /\.(ts|mjs|js|md)$/.test(f) && f !== 'scripts/citations.mjs');
const fix = process.argv.includes('--fix');
let left = 0;
for (const f of files) {
  const before = readFileSync(f, 'utf8');
  const after = fix ? rewrite(before, f) : before;
  if (after !== before) writeFileSync(f, after);
  for (const l of leftovers(after)) {
    left++;
    console.log(`${f}:${l}`);
  }
}
process.exitCode = left === 0 ? 0 : 1;
