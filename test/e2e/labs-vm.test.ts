// End to end: the real CLI boots the real guest kernel (TCG when KVM does not
// work) and runs labs in it. Slow by nature: each test boots one VM.
import { describe, expect, it } from 'vitest';
import { cli, fixtures, tail } from './cli-helpers.ts';

const VM_TEST_MS = 240_000;

describe('lab runs in a real VM', () => {
  it.each(['image', 'host'])(
    'labs 01 and 02 pass on the guest kernel (--rootfs %s)',
    async (rootfs) => {
      const { code, out } = await cli(['lab', '1', '2', '--rootfs', rootfs]).done;
      expect(out).toContain('qemu ready in');
      expect(out).toContain('✔ PASS Lab 01');
      expect(out).toContain('✔ PASS Lab 02');
      expect(out).toContain('labs: 2 passed, 0 failed, 0 skipped');
      expect(code, tail(out)).toBe(0);
    },
    VM_TEST_MS,
  );

  it(
    'a lab with a wrong expectation fails with a readable diff and exit code 1',
    async () => {
      const { code, out } = await cli(['lab', 'broken'], { LABS_DIR: fixtures }).done;
      expect(code, tail(out)).toBe(1);
      expect(out).toContain('✖ FAIL step 1/2: Create a SOCKMAP');
      // The command, what was expected, what the kernel did.
      expect(out).toMatch(/command:\n\s+bpftool map create \$PIN\/sockmap/);
      expect(out).toMatch(/exit code\n\s+expected: non-zero \(failure\)\n\s+got:\s+0/);
      expect(out).toMatch(/fails with EINVAL\n\s+expected: EINVAL in the output/);
      expect(out).toContain('✖ FAIL Lab 01 Broken on purpose: 0/2 steps passed');
    },
    VM_TEST_MS,
  );

  it(
    'a step over its timeout is killed and fails; the run goes on to clean up',
    async () => {
      const { code, out } = await cli(['lab', 'slow', '--timeout-scale', '0.002'], { LABS_DIR: fixtures }).done;
      expect(code, tail(out)).toBe(1);
      expect(out).toMatch(/finished in time\n\s+expected: the command to finish\n\s+got:\s+killed after/);
    },
    VM_TEST_MS,
  );

  it(
    'without the step agent (a channel per step, the fallback), a lab passes and a timeout still kills',
    async () => {
      // SSH only: the serial transport has nothing but the agent.
      const env = { LAB_STEP_AGENT: '0', LAB_TRANSPORT: 'ssh' };
      const pass = await cli(['lab', '1', '--quiet'], env).done;
      expect(pass.code, tail(pass.out)).toBe(0);
      expect(pass.out).toContain('✔ PASS Lab 01');
      const slow = await cli(['lab', 'slow', '--timeout-scale', '0.002'], { ...env, LABS_DIR: fixtures }).done;
      expect(slow.code, tail(slow.out)).toBe(1);
      expect(slow.out).toMatch(/finished in time\n\s+expected: the command to finish\n\s+got:\s+killed after/);
    },
    VM_TEST_MS,
  );

});

describe('bad input, no VM needed', () => {
  it('an unknown lab lists the labs and exits 2', async () => {
    const { code, out } = await cli(['lab', '99']).done;
    expect(code, tail(out)).toBe(2);
    expect(out).toContain('no lab "99"');
    expect(out).toContain('01-create-map');
    expect(out).toContain('fix:');
  });

  it('a mistyped --kernel path says to check that path, not to fetch a kernel', async () => {
    const { code, out } = await cli(['lab', '1', '--kernel', '/nonexistent/vmlinuz']).done;
    expect(code, tail(out)).toBe(2);
    expect(out).toContain('kernel image --kernel /nonexistent/vmlinuz does not exist');
    expect(out).toContain('fix:   check the path given to --kernel');
    expect(out).not.toContain('npm run kernels -- fetch');
  });

  it('--help shows examples', async () => {
    const { code, out } = await cli(['lab', '--help']).done;
    expect(code, tail(out)).toBe(0);
    expect(out).toContain('Examples:');
    expect(out).toContain('npm run lab all');
  });
});
