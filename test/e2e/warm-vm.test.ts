// The warm VM: `vm up` once, then lab runs attach to it instead of booting;
// two runs at once never share it; `vm down` leaves nothing behind.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, qemuPids } from './cli-helpers.ts';

// A warm VM of the tests' own, apart from any the developer has up.
const vmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-warm-test-'));
const tag = `warm${process.pid}`;
const env = { LAB_VM_DIR: vmDir, LAB_RUN_TAG: tag };

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

      const status = await cli(['vm', 'status'], env).done;
      expect(status.out).toContain(`qemu pid ${state.pid}`);

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
      // The same QEMU served every run.
      expect(qemuPids(tag)).toEqual([state.pid]);
    },
    300_000,
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
    'vm down stops it and removes its keys and state',
    async () => {
      const state = JSON.parse(fs.readFileSync(path.join(vmDir, 'state.json'), 'utf8'));
      const down = await cli(['vm', 'down'], env).done;
      expect(down.out).toContain(`stopped the warm VM (qemu pid ${state.pid})`);
      expect(qemuPids(tag)).toEqual([]);
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
});
