import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyNearMiss, checkNearMisses, loadNearMisses } from '../runner/near-miss.ts';
import { parseLab } from '../runner/labs.ts';

const solution = 'int f(int x)\n{\n\treturn x & 0xff;\n}\n';
const miss = (replace: [string, string][]) => ({ name: 'm', why: 'w', fails_at: 's', replace });

describe('near misses', () => {
  it('applies its edits to the solution, in order', () => {
    expect(applyNearMiss(solution, miss([['0xff', '0x7f'], ['x & 0x7f', 'x | 0x7f']]))).toBe('int f(int x)\n{\n\treturn x | 0x7f;\n}\n');
  });

  it('refuses an edit whose text is not in the solution exactly once, naming it', () => {
    expect(() => applyNearMiss(solution, miss([['0xfe', '1']]))).toThrow('near miss m: "0xfe" is in the solution 0 times, not once');
    expect(() => applyNearMiss(solution, miss([['x', 'y']]))).toThrow('is in the solution 3 times, not once');
  });

  it('a lab check names an edit that no longer fits, a missing step and a step without a hint', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sml-near-miss-'));
    try {
      fs.mkdirSync(path.join(dir, 'solution'));
      fs.writeFileSync(path.join(dir, 'solution', 'p.bpf.c'), solution);
      fs.writeFileSync(
        path.join(dir, 'near-misses.yaml'),
        'gone:\n  why: w\n  fails_at: Probe\n  replace:\n    - ["0xfe", "1"]\nnostep:\n  why: w\n  fails_at: Nowhere\n  replace:\n    - ["0xff", "1"]\nnohint:\n  why: w\n  fails_at: Quiet\n  replace:\n    - ["0xff", "1"]\n',
      );
      const spec = parseLab('title: T\nexercise:\n  files: [p.bpf.c]\n  text: t\nsteps:\n  - title: Probe\n    run: "true"\n    hint: h\n  - title: Quiet\n    run: "true"\n', 'lab.yaml');
      expect(loadNearMisses(dir).map((n) => n.name)).toEqual(['gone', 'nostep', 'nohint']);
      expect(checkNearMisses(dir, spec)).toEqual([
        'near miss gone: "0xfe" is in the solution 0 times, not once',
        'near miss nostep: no step "Nowhere"',
        'near miss nohint: step "Quiet" has no hint to name the case',
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
