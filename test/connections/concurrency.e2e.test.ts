/**
 * the headline of src/connections/README.md ("Refresh rules"): 4 processes × 50 concurrent getAccessToken calls on one expired connection make
 * exactly one refresh at Dropbox (the emulator), and every call gets the same valid token.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { makeRig, type Rig } from './setup.js';

const CHILD = fileURLToPath(new URL('./fixtures/token-child.ts', import.meta.url));
const PROCESSES = 4;
const CALLS = 50;

let rig: Rig;
before(async () => {
  rig = await makeRig({ listen: true });
});
after(() => rig.close());

function startChild(offsetMs: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, rig.home, rig.emu.url, 'shared', String(CALLS), String(offsetMs)], {
    env: { ...process.env, DROPKEY_MASTER_KEY: rig.masterKey },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  const lines = createInterface({ input: child.stdout });
  const iter = lines[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await iter.next();
    if (r.done) throw new Error(`child exited early: ${stderr}`);
    return r.value;
  };
  return { child, next, stderr: () => stderr };
}

test(`${PROCESSES} processes × ${CALLS} concurrent calls on an expired connection → one refresh`, async () => {
  const a = await rig.appWithAccount({ name: 'conc' });
  const g = await a.grant();
  await rig.dk.import({ connection: 'shared', app: 'conc', refreshToken: g.refresh_token! });
  const before = (await rig.stored('shared'))!;
  await rig.advance(4 * 3600 + 60);
  await rig.emu.control.clearRequests();

  const offset = rig.clock.now - Date.now();
  const children = Array.from({ length: PROCESSES }, () => startChild(offset));
  for (const c of children) assert.equal(await c.next(), 'ready');
  for (const c of children) c.child.stdin.write('go\n');
  const outputs = await Promise.all(children.map(async (c) => JSON.parse(await c.next()) as Array<{ token?: string; error?: string }>));
  for (const c of children) {
    if (c.child.exitCode === null) await once(c.child, 'exit');
    assert.equal(c.child.exitCode, 0, c.stderr());
  }

  const all = outputs.flat();
  assert.equal(all.length, PROCESSES * CALLS);
  const errors = all.filter((r) => r.error);
  assert.deepEqual(errors, []);
  const tokens = new Set(all.map((r) => r.token));
  assert.equal(tokens.size, 1, 'every call got the same token');
  const [token] = [...tokens];
  assert.notEqual(token, before.accessToken);
  assert.equal(await rig.tokenCalls(), 1, 'exactly one refresh at the emulator');
  assert.equal((await rig.emu.rpc('users/get_current_account', undefined, token!)).status, 200);
  const after = (await rig.stored('shared'))!;
  assert.equal(after.refreshToken, before.refreshToken);
  assert.equal(after.accessToken, token);
});
