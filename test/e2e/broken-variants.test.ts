// Every lab's checks must be able to fail. Each real lab is copied with one
// deliberate mistake (a "broken solution") and run in the VM: the lab must
// fail at the step that the mistake breaks.
import fs from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, root } from './cli-helpers.ts';

/** Lab folder → [how it is broken, the step that must fail, the change]. */
type Spec = { steps: { title: string; run: string }[] };
const BROKEN: Record<string, { why: string; failingStep: string; mutate: (lab: Spec) => void }> = {
  '01-create-map': {
    why: 'the map is made with 1 slot instead of 2',
    failingStep: 'step 2/7: Look at it',
    mutate: (lab) => {
      lab.steps[0].run = lab.steps[0].run.replace('entries 2', 'entries 1');
    },
  },
  '02-attach-program': {
    why: 'the program is never attached, so nothing keeps it alive',
    failingStep: 'step 3/6: The map holds the program',
    mutate: (lab) => {
      lab.steps = lab.steps.filter((s) => s.title !== 'Attach it to the map');
    },
  },
};

// Inside the checkout, so the guest sees it through the project share.
const dir = path.join(root, 'build/test-broken-labs');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('broken variants of the real labs fail', () => {
  it(
    'each broken lab fails at the step its mistake breaks',
    async () => {
      fs.rmSync(dir, { recursive: true, force: true });
      for (const [id, b] of Object.entries(BROKEN)) {
        const lab = parse(fs.readFileSync(path.join(root, 'labs', id, 'lab.yaml'), 'utf8')) as Spec;
        b.mutate(lab);
        fs.mkdirSync(path.join(dir, id), { recursive: true });
        fs.writeFileSync(path.join(dir, id, 'lab.yaml'), `# broken: ${b.why}\n${stringify(lab)}`);
      }
      const { code, out } = await cli(['lab', 'all', '--quiet'], { LABS_DIR: dir }).done;
      expect(code).toBe(1);
      for (const [id, b] of Object.entries(BROKEN)) {
        expect(out, `${id}: ${b.why}`).toContain(`✖ FAIL ${b.failingStep}`);
      }
      expect(out).toContain(`labs: 0 passed, ${Object.keys(BROKEN).length} failed`);
    },
    240_000,
  );

  it('every lab has a broken variant', () => {
    const labs = fs.readdirSync(path.join(root, 'labs')).filter((d) => /^\d+-/.test(d));
    expect(labs.filter((l) => !(l in BROKEN))).toEqual([]);
  });
});
