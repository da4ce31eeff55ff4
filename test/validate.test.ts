// `lab validate`: every problem in a labs folder, each with file:line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { validateLabs } from '../runner/validate.ts';
import { projectRoot } from '../core/paths.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-validate-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function lab(dir: string, files: Record<string, string>) {
  fs.mkdirSync(path.join(root, dir), { recursive: true });
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(root, dir, f), text);
}

const good = 'title: Good\nsteps:\n  - title: One\n    run: "true"\n';
const broken = 'why: it is wrong\nfails_at: One\nchanges:\n  - step: One\n    replace: ["true", "false"]\n';

describe('validateLabs', () => {
  it('the real labs have no problems', () => {
    expect(validateLabs(path.join(projectRoot, 'labs')).problems).toEqual([]);
  });

  it('reports every kind of problem with its file and line', () => {
    lab('01-good', { 'lab.yaml': good, 'broken.yaml': broken });
    lab('02-no-broken', { 'lab.yaml': good });
    lab('03-bad-key', { 'lab.yaml': 'title: Bad\nsteps:\n  - title: One\n    run: "true"\n    expcet: {}\n', 'broken.yaml': broken });
    lab('04-wrong-step', { 'lab.yaml': good, 'broken.yaml': broken.replace('fails_at: One', 'fails_at: Two') });
    lab('01-same-number', { 'lab.yaml': good, 'broken.yaml': broken });
    lab('Bad_Name', { 'lab.yaml': good });
    lab('05-empty', {});
    const { problems } = validateLabs(root);
    const text = problems.map((p) => `${path.basename(path.dirname(p.file))}/${path.basename(p.file)}:${p.line}: ${p.message}`);
    expect(text).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^02-no-broken\/broken\.yaml:1: missing/),
        expect.stringMatching(/^03-bad-key\/lab\.yaml:5: .*expcet/),
        expect.stringMatching(/^04-wrong-step\/broken\.yaml:1: .*no step "Two"/),
        expect.stringMatching(/lab number 1 is also used by/),
        expect.stringMatching(/Bad_Name:1: a lab folder is named NN-name/),
        expect.stringMatching(/05-empty:1: no lab\.yaml/),
      ]),
    );
    expect(text.some((t) => t.startsWith('01-good/'))).toBe(false);
  });
});

describe('lab new', () => {
  it('scaffolds the next number, and the scaffold validates', async () => {
    const { scaffold } = await import('../runner/lab-commands.ts');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-new-'));
    try {
      lab('x', {}); // unrelated
      fs.mkdirSync(path.join(dir, '07-seven'));
      fs.writeFileSync(path.join(dir, '07-seven/lab.yaml'), good);
      fs.writeFileSync(path.join(dir, '07-seven/broken.yaml'), broken);
      expect(scaffold('udp-redirect', dir)).toContain('npm run lab 8');
      expect(fs.existsSync(path.join(dir, '08-udp-redirect/lab.yaml'))).toBe(true);
      expect(validateLabs(dir).problems).toEqual([]);
      expect(() => scaffold('udp-redirect', dir)).toThrow(/exists already/);
      expect(() => scaffold('Bad Name', dir)).toThrow(/lower-case words joined by dashes/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
