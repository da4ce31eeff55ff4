// `--backend vng` end to end, with the unmodified virtme-ng kept in
// ../shared/vendor for tests (a learner gets the same with `pip install
// virtme-ng`), run through a small `vng` wrapper on PATH. Under TCG here: the
// session's KVM probe finds KVM broken and passes --disable-kvm.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, fixtures, qemuPids, root, tail, waitForOutput } from './cli-helpers.ts';

const VENDORED = path.resolve(root, '../shared/vendor/virtme-ng/vng');

/** Why vng cannot run here, or undefined when it can. */
function vngMissing(): string | undefined {
  if (!fs.existsSync(VENDORED)) return `no vendored virtme-ng at ${VENDORED}`;
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import argcomplete, requests'], { stdio: 'ignore' });
  } catch {
    return 'Debian python3-argcomplete and python3-requests are not installed (.ci/run installs them)';
  }
  return undefined;
}
const missing = vngMissing();
if (missing) console.warn(`vng e2e tests skipped: ${missing}`);

const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-vng-bin-'));
fs.writeFileSync(path.join(bin, 'vng'), `#!/bin/sh\nexec /usr/bin/python3 ${VENDORED} "$@"\n`, { mode: 0o755 });
afterAll(() => fs.rmSync(bin, { recursive: true, force: true }));

let n = 0;
/** The env of a run with vng on PATH and a tag of its own, so the check sees exactly its QEMU. */
function vngEnv(extra: Record<string, string> = {}) {
  const tag = `vng${process.pid}x${++n}`;
  return { tag, env: { PATH: `${bin}:${process.env.PATH}`, LAB_RUN_TAG: tag, ...extra } };
}

describe.skipIf(!!missing)('--backend vng', () => {
  it(
    'labs 01, 04, 07, 11 and 14 pass with their reference solutions (or are skipped with their reason); nothing is left running',
    async () => {
      // Maps, sock_ops in a cgroup between netns, the redirect modes, the matrix,
      // and a proxy helper: what vng's guest (the host's root, its own init)
      // could do differently. Every lab runs on the image, the host root (the
      // GitHub workflow) and the host backend; all of them here would cost CI
      // five minutes (npm run lab all -- --solutions --backend vng runs them).
      const { tag, env } = vngEnv();
      const { code, out } = await cli(['lab', '1', '4', '7', '11', '14', '--quiet', '--solutions', '--backend', 'vng'], env).done;
      expect(out).toMatch(/» vng ready in [\d.]+ s: kernel 6\.\d+\S*, accel (tcg|kvm)/);
      expect(out).not.toMatch(/✖ FAIL/);
      expect(out).not.toContain('pyenv'); // nothing of the host user's shell start-up reaches a step
      expect(out).toMatch(/✔ PASS Lab 11 /);
      expect(out).toMatch(/✔ PASS Lab 14 /);
      expect(code, tail(out)).toBe(0);
      expect(qemuPids(tag)).toEqual([]);
    },
    900_000,
  );

  it(
    'a guest that does not come up in time: a clear error with the console tail and the command to try by hand, within the bound',
    async () => {
      const { tag, env } = vngEnv({ LAB_BOOT_TIMEOUT: '8' });
      const t0 = Date.now();
      const { code, out } = await cli(['lab', '1', '--backend', 'vng'], env).done;
      expect(out).toMatch(/the vng guest's SSH server did not answer on 127\.0\.0\.1:\d+ within 8 s/);
      expect(out).toMatch(/fix: +run it by hand to watch the boot: vng --run=\S+ .*--disable-kvm/);
      expect(out).toContain('│'); // the console tail
      expect(code, tail(out)).toBe(2);
      // The bound: 8 s for the boot, what comes before it (build, probe) and a stop that does not wait.
      expect(Date.now() - t0).toBeLessThan(40_000);
      expect(qemuPids(tag)).toEqual([]);
    },
    120_000,
  );

  it(
    'SIGTERM while the guest boots stops it at once, leaving nothing',
    async () => {
      const { tag, env } = vngEnv({ LABS_DIR: fixtures });
      const run = cli(['lab', 'slow', '--backend', 'vng'], env);
      await waitForOutput(run, 'starting vng', 60_000);
      const end = Date.now() + 60_000;
      while (qemuPids(tag).length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      expect(qemuPids(tag)).toHaveLength(1);
      const t0 = Date.now();
      run.child.kill('SIGTERM');
      const { code, out } = await run.done;
      expect(Date.now() - t0, tail(out)).toBeLessThan(8_000);
      expect(code, tail(out)).toBe(143);
      expect(qemuPids(tag)).toEqual([]);
    },
    120_000,
  );
});

describe('--backend vng without vng', () => {
  it('says how to install virtme-ng before anything boots, and exits 2', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-novng-'));
    try {
      // Everything else the run needs stays on PATH; only vng is missing.
      const dirs = (process.env.PATH ?? '').split(':').filter((d) => !fs.existsSync(path.join(d, 'vng')));
      const { code, out } = await cli(['lab', '1', '--backend', 'vng'], { PATH: [empty, ...dirs].join(':') }).done;
      expect(out).toMatch(/✖ vng +--backend vng needs virtme-ng, but `vng` was not found on PATH/);
      expect(out).toContain('pip install virtme-ng');
      expect(code, tail(out)).toBe(2);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});
