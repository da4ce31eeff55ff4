// An exercise's checks must reject a program that is almost right, and say
// which case it got wrong. A lab's near-misses.yaml lists such programs, each
// the solution with a few edits (runner/near-miss.ts); here each one replaces
// the learner's file in a copy of its lab, and the lab must fail at the step
// whose hint names the mistake. All the copies run in one VM (`lab all`): one
// boot for the whole set.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverLabs, loadLab, type LoadedLab as Lab } from '../../runner/labs.ts';
import { applyNearMiss, checkNearMisses, loadNearMisses, type NearMiss } from '../../runner/near-miss.ts';
import { cli, root, tail } from './cli-helpers.ts';

// Inside the checkout, so the guest sees it through the project share.
const dir = path.join(root, 'build/test-near-misses');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const labs = discoverLabs(path.join(root, 'labs')).map(loadLab);
const withNearMisses = labs.map((lab) => ({ lab, misses: loadNearMisses(lab.dir) })).filter((l) => l.misses.length);

/** A hint as the terminal shows it, give or take markdown and line breaks. */
const flat = (s: string) => s.replace(/[`*]/g, '').replace(/\s+/g, ' ').trim();

interface Copy {
  number: number;
  lab: Lab;
  miss: NearMiss;
}

describe('near misses of the exercises fail', () => {
  it('every exercise has near misses; each fits its solution and names a step with a hint', () => {
    const exercises = labs.filter((l) => l.spec.exercise).map((l) => l.id);
    expect(withNearMisses.map((l) => l.lab.id)).toEqual(exercises);
    for (const { lab, misses } of withNearMisses) {
      expect(checkNearMisses(lab.dir, lab.spec), lab.id).toEqual([]);
      expect(misses.length, `${lab.id}: plausible wrong solutions`).toBeGreaterThanOrEqual(4);
    }
  });

  it(
    'each near miss fails its lab at the step whose hint names its mistake',
    async () => {
      fs.rmSync(dir, { recursive: true, force: true });
      // Two halves, each in a VM of its own, side by side: the 2-core machine
      // runs both in about 60% of the time one VM takes for all of them.
      const halves = [path.join(dir, 'a'), path.join(dir, 'b')];
      const copies: Copy[] = [];
      let number = 50;
      for (const { lab, misses } of withNearMisses) {
        const [file] = lab.spec.exercise!.files;
        const solution = fs.readFileSync(path.join(lab.dir, 'solution', file), 'utf8');
        for (const miss of misses) {
          const copy = path.join(halves[number % 2], `${number}-${lab.id.slice(3)}-${miss.name.replace(/[^a-z0-9]+/g, '-')}`);
          fs.cpSync(lab.dir, copy, { recursive: true });
          fs.writeFileSync(path.join(copy, 'exercise', file), `// Near miss: ${miss.why}\n${applyNearMiss(solution, miss)}`);
          copies.push({ number: number++, lab, miss });
        }
      }

      const t0 = Date.now();
      const runs = await Promise.all(
        halves.map((half, i) => cli(['lab', 'all', '--quiet', '--no-warm'], { LABS_DIR: half, LAB_RUN_TAG: `nearmiss${process.pid}x${i}` }).done),
      );
      const seconds = (Date.now() - t0) / 1000;
      console.log(`near misses: ${copies.length} lab runs in two VMs side by side, ${seconds.toFixed(0)} s`);
      runs.forEach(({ code, out }, i) => {
        const count = copies.filter((c) => c.number % 2 === i).length;
        expect(code, tail(out)).toBe(1);
        expect(out, tail(out)).toContain(`labs: 0 passed, ${count} failed`);
      });
      const out = runs.map((r) => r.out).join('\n');

      // One section of the output per lab run: "━━ Lab 57 · Egress policy… ━━".
      const sections = new Map<number, string>();
      const heads = [...out.matchAll(/^━━ Lab (\d+) · /gm)];
      heads.forEach((h, i) => sections.set(Number(h[1]), out.slice(h.index, heads[i + 1]?.index ?? out.length)));

      const seen: string[] = [];
      for (const c of copies) {
        const what = `${c.lab.id} near miss ${c.miss.name}`;
        const text = sections.get(c.number);
        expect.soft(text, `${what}: no output`).toBeDefined();
        if (!text) continue;
        const steps = c.lab.spec.steps;
        const n = steps.findIndex((s) => s.title === c.miss.fails_at) + 1;
        const fails = [...text.matchAll(/^ *✖ FAIL step (\d+\/\d+: .*?) [\d.]+ s$/gm)].map((m) => m[1]);
        seen.push(`${c.lab.id} ${c.miss.name}: ${fails.map((f) => `✖ FAIL step ${f}`).join(', ') || 'did not fail'}`);
        expect.soft(fails, `${what}: should fail at step ${n}`).toEqual([`${n}/${steps.length}: ${c.miss.fails_at}`]);
        const hint = /^ {4}hint:\n((?: {6}.*\n?)+)/m.exec(text.slice(text.indexOf('✖ FAIL step')));
        expect.soft(flat(hint?.[1] ?? 'no hint shown'), `${what}: the hint of step ${n}`).toBe(flat(steps[n - 1].hint!));
      }
      console.log(seen.join('\n'));
    },
    900_000,
  );
});
