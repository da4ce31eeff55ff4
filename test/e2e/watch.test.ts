// Watch mode in a real terminal (tmux): `npm run lab 5 -- --watch` checks the
// exercise, then again on each save — a file that does not build, then the
// right one — showing only the first failing step of each try; Ctrl-C stops
// with a summary, and the warm VM it started is gone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { qemuPids, root, testStateHome } from './cli-helpers.ts';
import { Tmux } from './tty.ts';

const sessions: Tmux[] = [];
const tag = `watch${process.pid}`;
// Inside the checkout: the guest sees the exercise through the project share.
const labs = path.join(root, `build/test-watch-labs-${process.pid}`);
const vmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-watch-test-'));
afterAll(() => {
  for (const t of sessions) t.kill();
  fs.rmSync(labs, { recursive: true, force: true });
  fs.rmSync(vmDir, { recursive: true, force: true });
});

describe('lab --watch', () => {
  it(
    're-checks the exercise on each save, shows the first failing step against the last try, and stops on Ctrl-C with a summary',
    async () => {
      const lab = path.join(labs, '05-egress-policy');
      fs.cpSync(path.join(root, 'labs/05-egress-policy'), lab, { recursive: true });
      const exercise = path.join(lab, 'exercise/policy_egress.bpf.c');
      const t = new Tmux('node runner/launch.mjs lab 5 --watch', { LABS_DIR: labs, LAB_VM_DIR: vmDir, LAB_RUN_TAG: tag, LAB_STATE_HOME: testStateHome, NO_COLOR: '1' });
      sessions.push(t);

      // The exercise as handed out: incomplete, so a later step fails.
      const first = await t.waitFor(/✖ try 1 \(.*\): step (\d+)\/\d+: .*/, 240_000);
      const failedAt = Number(/✖ try 1 \(.*\): step (\d+)\//.exec(first)![1]);
      expect(first).toMatch(/expected:/);
      expect(first).toMatch(/hint:/);
      expect(first).toContain('waiting for a save');

      // A save that does not build: it fails earlier than the last try, and says so.
      fs.writeFileSync(exercise, `${fs.readFileSync(exercise, 'utf8')}\nthis is not C;\n`);
      const second = await t.waitFor(/✖ try 2 \(.*\): step (\d+)\/\d+: .*\(last try got to step (\d+)\)/, 180_000);
      const m = /✖ try 2 \(.*\): step (\d+)\/\d+: .*\(last try got to step (\d+)\)/.exec(second)!;
      expect(Number(m[1])).toBeLessThan(failedAt);
      expect(Number(m[2])).toBe(failedAt);

      // The right one.
      fs.copyFileSync(path.join(lab, 'solution/policy_egress.bpf.c'), exercise);
      await t.waitFor(/✔ try 3 \(.*\): all \d+ steps pass \(last try failed at step \d+\)\. Solved/, 180_000);
      expect(qemuPids(tag)).toHaveLength(1);

      t.keys('C-c');
      const end = await t.waitFor(/EXIT=\d+/, 60_000);
      expect(end).toMatch(/stopped watching lab 05-egress-policy \(Ctrl-C\): 3 tries, the last one passed every step\. The warm VM is stopped\./);
      expect(end).toContain('EXIT=0');
      expect(qemuPids(tag)).toEqual([]);
    },
    600_000,
  );
});
