// Every lab's checks must be able to fail. Each lab's broken.yaml describes one
// deliberate mistake (a "broken solution"); applied, the lab must fail at the
// step it names. All broken labs run in one VM.
import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { applyBroken, loadBroken } from '../../runner/broken-variant.ts';
import { discoverLabs, loadLab } from '../../runner/labs.ts';
import { cli, root, tail } from './cli-helpers.ts';

const labs = discoverLabs(path.join(root, 'labs')).map(loadLab);
// Inside the checkout, so the guest sees it through the project share.
const dir = path.join(root, 'build/test-broken-labs');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('broken variants of the real labs fail', () => {
  it(
    'each broken lab fails at the step its mistake breaks',
    async () => {
      fs.rmSync(dir, { recursive: true, force: true });
      const expected: { id: string; why: string; step: string }[] = [];
      for (const lab of labs) {
        const b = loadBroken(lab.dir)!;
        const broken = applyBroken(lab.spec, b);
        const n = broken.steps.findIndex((s) => s.title === b.fails_at);
        expected.push({ id: lab.id, why: b.why, step: `step ${n + 1}/${broken.steps.length}: ${b.fails_at}` });
        // The broken copy keeps the lab's own folder contents (helpers, sources) beside it.
        fs.cpSync(lab.dir, path.join(dir, lab.id), { recursive: true });
        fs.writeFileSync(path.join(dir, lab.id, 'lab.yaml'), `# broken: ${b.why}\n${stringify(broken)}`);
      }
      const junit = path.join(dir, 'junit.xml');
      const html = path.join(dir, 'report.html');
      const { code, out } = await cli(['lab', 'all', '--quiet', '--solutions', '--reporter', `junit=${junit}`, '--reporter', `html=${html}`, '--reporter', 'human'], { LABS_DIR: dir }).done;
      expect(code, tail(out)).toBe(1);
      for (const e of expected) expect(out, `${e.id}: ${e.why}`).toContain(`✖ FAIL ${e.step}`);
      expect(out).toContain(`labs: 0 passed, ${labs.length} failed`);
      // Real failures explained in SOCKMAP terms, in every report: lab 09's broken
      // variant deletes an empty SOCKMAP slot (EINVAL), and its socket's writes stay dropped (EACCES).
      expect(out).toMatch(/in SOCKMAP terms:\n[\s\S]*?delete → EINVAL \(Error: delete failed: Invalid argument\)\n\s+on a SOCKMAP, deleting an empty slot/);
      expect(out).toMatch(/send → EACCES \(bash: line \d+: echo: write error: Permission denied\)/);
      expect(fs.readFileSync(junit, 'utf8')).toMatch(/<failure message="[^"]*delete → EINVAL: on a SOCKMAP, deleting an empty slot[^"]*\[net\/core\/sock_map\.c: __sock_map_delete\(\)\]/);
      expect(fs.readFileSync(html, 'utf8')).toContain('<b>delete → EINVAL</b>: on a SOCKMAP, deleting an empty slot');
    },
    600_000,
  );
});
