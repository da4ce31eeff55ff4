// The warm VM: `vm up` once, then lab runs attach to it instead of booting;
// two runs at once never share it; `vm down` leaves nothing behind.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fanOut, runLab } from '../../runner/executor.ts';
import { discoverLabs, loadLab, selectLabs } from '../../runner/labs.ts';
import { AttachedBackend, WarmStore } from '../../vm/warm.ts';
import { cli, fixtures, keeperPids, qemuPids } from './cli-helpers.ts';

// A warm VM of the tests' own, apart from any the developer has up.
const vmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-warm-test-'));
const tag = `warm${process.pid}`;
// The host-root VM over SSH, with its keeper (the guest image's warm VM, over virtio-serial, is image-labs.test.ts's).
const env = { LAB_VM_DIR: vmDir, LAB_RUN_TAG: tag, LAB_TRANSPORT: 'ssh' };

afterAll(async () => {
  await cli(['vm', 'down'], env).done;
  fs.rmSync(vmDir, { recursive: true, force: true });
});

describe('warm VM', () => {
  it(
    'vm up boots once; status, exec, and lab runs attach to it',
    async () => {
      const up = await cli(['vm', 'up'], env).done;
      expect(up.out).toMatch(/warm VM up for \d+ s: kernel 6\.\d+/);
      expect(up.code).toBe(0);
      const state = JSON.parse(fs.readFileSync(path.join(vmDir, 'state.json'), 'utf8'));
      expect(fs.statSync(path.join(vmDir, 'state.json')).mode & 0o777).toBe(0o600);
      expect(fs.statSync(vmDir).mode & 0o777).toBe(0o700);
      expect(fs.statSync(state.clientKey).mode & 0o777).toBe(0o600);
      // The keeper runs, reachable only by this user.
      expect(keeperPids(tag)).toEqual([state.keeperPid]);
      expect(fs.statSync(path.join(state.vmDir, 'keeper.sock')).mode & 0o777).toBe(0o600);

      const status = await cli(['vm', 'status'], env).done;
      expect(status.out).toContain(`qemu pid ${state.pid}`);
      expect(status.out).toContain(`keeper pid ${state.keeperPid}`);

      const exec = await cli(['vm', 'exec', '--', 'uname -r; id -u'], env).done;
      expect(exec.out).toContain(`${state.kernelRelease}\n0\n`);
      expect(exec.code).toBe(0);

      const failing = await cli(['vm', 'exec', '--', 'exit 7'], env).done;
      expect(failing.code).toBe(7);

      for (let i = 0; i < 2; i++) {
        const run = await cli(['lab', '1', '--quiet'], env).done;
        expect(run.out).toContain('using the warm VM');
        expect(run.out).toContain('✔ PASS Lab 01');
        expect(run.code).toBe(0);
      }
      // The same QEMU served every run, each through the keeper's waiting agent.
      expect(qemuPids(tag)).toEqual([state.pid]);
      expect(fs.readFileSync(path.join(state.vmDir, 'keeper.log'), 'utf8').match(/run \d+ attached/g)).toHaveLength(4);
      // Every run's agent ended with it: this exec's own and the next run's are all that is left.
      expect((await cli(['vm', 'exec', '--', 'pgrep -c -x step-agent'], env).done).out.trim()).toBe('2');

    },
    300_000,
  );

  it(
    "a background actor and its children are gone when the lab's run ends, not a moment later",
    async () => {
      // In this process, so the look comes within milliseconds of the teardown (as the soak's does).
      const store = new WarmStore(vmDir);
      const b = new AttachedBackend(store.read()!, store);
      const info = await b.start();
      try {
        const lab = loadLab(selectLabs(discoverLabs(fixtures), ['background'])[0]);
        const r = await runLab(lab, b, fanOut([]), { kernelRelease: info.kernelRelease });
        expect(r.status).toBe('passed');
        expect((await b.exec('pgrep -c -x sleep || true')).stdout.trim()).toBe('0');
      } finally {
        await b.stop();
      }
    },
    60_000,
  );

  it(
    'two runs at once: one attaches, the other boots its own VM; both pass',
    async () => {
      const a = cli(['lab', '1', '2', '--quiet'], env);
      const b = cli(['lab', '2', '1', '--quiet'], env);
      const [ra, rb] = await Promise.all([a.done, b.done]);
      const outs = [ra.out, rb.out];
      expect(outs.filter((o) => o.includes('using the warm VM'))).toHaveLength(1);
      expect(outs.filter((o) => o.includes('the warm VM is busy with another run'))).toHaveLength(1);
      expect([ra.code, rb.code]).toEqual([0, 0]);
    },
    300_000,
  );

  it(
    'a run killed mid-step leaves nothing running in the guest; without a keeper, a run connects over SSH and starts a new one',
    async () => {
      const state = JSON.parse(fs.readFileSync(path.join(vmDir, 'state.json'), 'utf8'));
      // SIGKILL: the run cannot clean up; the keeper sees its socket close and ends its agent, which kills the step.
      const run = cli(['vm', 'exec', '--', 'echo started; exec sleep 300'], env);
      while (!run.output().includes('started')) await new Promise((r) => setTimeout(r, 100));
      run.child.kill('SIGKILL');
      await run.done;
      const count = async () => (await cli(['vm', 'exec', '--', 'pgrep -c -x sleep || true'], env).done).out.trim();
      let sleeps = await count();
      for (let i = 0; i < 20 && sleeps !== '0'; i++) sleeps = await count();
      expect(sleeps).toBe('0');

      process.kill(state.keeperPid, 'SIGKILL');
      const status = await cli(['vm', 'status'], env).done;
      expect(status.out).toContain('no keeper: runs connect over SSH');
      const lab = await cli(['lab', '1', '--quiet'], env).done;
      expect(lab.out).toContain('✔ PASS Lab 01');
      // That run started a new keeper for the next one.
      const again = JSON.parse(fs.readFileSync(path.join(vmDir, 'state.json'), 'utf8'));
      expect(again.keeperPid).not.toBe(state.keeperPid);
      for (let i = 0; i < 100 && !fs.existsSync(path.join(state.vmDir, 'keeper.sock')); i++) await new Promise((r) => setTimeout(r, 100));
      expect(keeperPids(tag)).toEqual([again.keeperPid]);
      expect((await cli(['vm', 'status'], env).done).out).toContain(`keeper pid ${again.keeperPid}`);
    },
    120_000,
  );

  it(
    'vm down stops it and removes its keys and state',
    async () => {
      const state = JSON.parse(fs.readFileSync(path.join(vmDir, 'state.json'), 'utf8'));
      const down = await cli(['vm', 'down'], env).done;
      expect(down.out).toContain(`stopped the warm VM (qemu pid ${state.pid})`);
      expect(qemuPids(tag)).toEqual([]);
      expect(keeperPids(tag)).toEqual([]);
      expect(fs.existsSync(state.vmDir)).toBe(false);
      expect(fs.readdirSync(vmDir)).toEqual([]);
      const status = await cli(['vm', 'status'], env).done;
      expect(status.out).toContain('no warm VM is up');
      const shell = await cli(['vm', 'exec', '--', 'true'], env).done;
      expect(shell.code).toBe(2);
      expect(shell.out).toContain('fix:   npm run vm -- up');
    },
    60_000,
  );

  it(
    'the keeper exits by itself when QEMU dies',
    async () => {
      expect((await cli(['vm', 'up'], env).done).code).toBe(0);
      const state = JSON.parse(fs.readFileSync(path.join(vmDir, 'state.json'), 'utf8'));
      expect(keeperPids(tag)).toEqual([state.keeperPid]);
      process.kill(state.pid, 'SIGKILL');
      for (let i = 0; i < 50 && keeperPids(tag).length; i++) await new Promise((r) => setTimeout(r, 100));
      expect(keeperPids(tag)).toEqual([]);
      expect(fs.existsSync(path.join(state.vmDir, 'keeper.sock'))).toBe(false);
      expect((await cli(['vm', 'status'], env).done).out).toContain('no warm VM is up');
    },
    120_000,
  );
});
