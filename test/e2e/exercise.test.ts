// An exercise lab fails until the learner's file is right, and passes after
// `lab solution N --apply`. Runs on a copy of lab 05, on a warm VM of its own.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, root, tail } from './cli-helpers.ts';

const labs = path.join(root, 'build/test-exercise');
const vmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-exercise-'));
const env = { LABS_DIR: labs, LAB_VM_DIR: vmDir, LAB_RUN_TAG: `exercise${process.pid}` };
afterAll(async () => {
  await cli(['vm', 'down'], env).done;
  fs.rmSync(vmDir, { recursive: true, force: true });
  fs.rmSync(labs, { recursive: true, force: true });
});

describe('exercises', () => {
  it(
    'lab 05 fails with the unsolved exercise, and passes after lab solution 5 --apply',
    async () => {
      fs.rmSync(labs, { recursive: true, force: true });
      fs.cpSync(path.join(root, 'labs/05-egress-policy'), path.join(labs, '05-egress-policy'), { recursive: true });
      expect((await cli(['vm', 'up'], env).done).code).toBe(0);

      const before = await cli(['lab', '5'], env).done;
      expect(before.out).toContain('✎ Exercise: complete');
      expect(before.out).toContain('npm run lab solution 5 shows the answer');
      expect(before.out).toContain('✖ FAIL step 10/23: A send to 192.0.2.1 is refused');
      expect(before.out).toContain('hint:');
      expect(before.code).toBe(1);

      const diff = await cli(['lab', 'solution', '5'], env).done;
      expect(diff.out).toContain('+\treturn (addr & bpf_htonl(BLOCKED_MASK_HOST)) == bpf_htonl(BLOCKED_NET_HOST);');
      const apply = await cli(['lab', 'solution', '5', '--apply'], env).done;
      expect(apply.out).toContain('copied');
      expect(fs.readFileSync(path.join(labs, '05-egress-policy/exercise/policy_egress.bpf.c'), 'utf8')).toContain('return SK_DROP;');

      const after = await cli(['lab', '5', '--quiet'], env).done;
      expect(after.out).toContain('✔ PASS Lab 05');
      expect(after.code).toBe(0);
    },
    600_000,
  );

  it('a lab without an exercise says which labs have one', async () => {
    const { code, out } = await cli(['lab', 'solution', '1']).done;
    expect(code, tail(out)).toBe(2);
    expect(out).toContain('lab 01-create-map has no exercise');
    expect(out).toMatch(/labs with one: 5, 6/);
  });
});
