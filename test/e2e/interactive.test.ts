// The interactive modes in a real terminal (tmux): --step and the VM shell.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, testStateHome, tail } from './cli-helpers.ts';
import { Tmux } from './tty.ts';

const sessions: Tmux[] = [];
const vmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-shell-test-'));
afterAll(async () => {
  for (const t of sessions) t.kill();
  await cli(['vm', 'down'], { LAB_VM_DIR: vmDir }).done;
  fs.rmSync(vmDir, { recursive: true, force: true });
});

describe('in a terminal', () => {
  it(
    'lab --step renders the text, pauses before each step, and runs, skips or quits on a key',
    async () => {
      const t = new Tmux('node runner/launch.mjs lab 1 --step --no-warm', { LAB_STATE_HOME: testStateHome, TERM: 'xterm-256color' });
      sessions.push(t);
      let s = await t.waitFor(/\[Enter\] run {3}\[s\] skip {3}\[q\] quit/, 180_000);
      // The lab text is rendered before the first step (heading, table), not shown as raw markdown.
      expect(s).toContain('SOCKMAP, part one: a container for sockets');
      expect(s).not.toContain('# SOCKMAP, part one');
      expect(s).toMatch(/sockmap\s+always 4 bytes \(an index\)\s+an array/);
      expect(s).toContain('▶ step 1/7: Create a SOCKMAP with 2 slots');
      // Nothing ran before the key.
      expect(s).not.toContain('✔ PASS');
      t.keys('Enter');
      s = await t.waitFor(/▶ step 2\/7: Look at it[\s\S]*\[Enter\] run/, 60_000);
      expect(s).toContain('✔ PASS');
      t.keys('s');
      s = await t.waitFor(/– SKIP skipped by you/, 30_000);
      await t.waitFor(/\[Enter\] run/, 30_000, 3);
      t.keys('q');
      s = await t.waitFor(/EXIT=\d+/, 60_000);
      expect(s).toMatch(/– SKIP Lab 01 Create a SOCKMAP and a SOCKHASH: you quit/);
      expect(s).toContain('EXIT=0');
    },
    300_000,
  );

  it('--step without a terminal is a clear error', async () => {
    const { code, out } = await cli(['lab', '1', '--step']).done;
    expect(code, tail(out)).toBe(2);
    expect(out).toContain('--step waits for your keys before each step, so it needs a terminal');
  });

  it(
    'npm run shell gives a root prompt in the warm VM',
    async () => {
      const up = await cli(['vm', 'up'], { LAB_VM_DIR: vmDir }).done;
      expect(up.code, tail(up.out)).toBe(0);
      const t = new Tmux('node runner/launch.mjs shell', { LAB_VM_DIR: vmDir, TERM: 'xterm-256color' });
      sessions.push(t);
      await t.waitFor(/root@sockmap-lab:~# $/m, 60_000);
      t.keys('bpftool map create /sys/fs/bpf/by-hand type sockmap key 4 value 8 entries 1 name byhand && bpftool map show pinned /sys/fs/bpf/by-hand; uname -r', 'Enter');
      const s = await t.waitFor(/name byhand\s+flags 0x0[\s\S]*6\.\d+\.\d+/, 60_000);
      expect(s).toMatch(/\d+: sockmap\s+name byhand\s+flags 0x0/);
      t.keys('rm /sys/fs/bpf/by-hand; exit 3', 'Enter');
      const end = await t.waitFor(/EXIT=\d+/, 30_000);
      expect(end).toContain('EXIT=3');
    },
    300_000,
  );
});
