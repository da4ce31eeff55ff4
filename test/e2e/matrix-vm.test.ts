// End to end: the real support matrix, measured in a real VM on the default
// guest kernel, with its JSON, markdown and HTML files. On Debian's 6.12 the
// JSON must match the hand-written expectation (data/expected/6.12.json).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../../core/config.ts';
import { matrixCommand } from '../../runner/matrix/command.ts';
import { checkExpectation, loadExpectation, MatrixSchema } from '../matrix-expect.ts';
import { projectRoot } from '../../core/paths.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-matrix-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('npm run matrix in a real VM', () => {
  it(
    'measures every cell in well under 10 minutes, writes the files, and matches what 6.12 is known to do',
    async () => {
      const out = new PassThrough();
      let text = '';
      out.on('data', (d) => (text += d));
      const files = { json: path.join(tmp, 'm.json'), markdown: path.join(tmp, 'm.md'), html: path.join(tmp, 'm.html') };
      const t0 = Date.now();
      const code = await matrixCommand(buildConfig({ warm: false }), { ...files, out });
      const wallMs = Date.now() - t0;
      expect(code, text).toBe(0);
      expect(wallMs).toBeLessThan(600_000);

      expect(text).toMatch(/» 314 probes in \d+\.\d s in the guest/);
      expect(text).toContain('SOCKMAP and SOCKHASH · ingress to egress');
      expect(text).toMatch(/vs\. the talk's cheat sheet/);

      const doc = JSON.parse(fs.readFileSync(files.json, 'utf8'));
      expect(doc.kernels).toHaveLength(1);
      const m = MatrixSchema.parse(doc.kernels[0]);
      expect(m.attached).toBe(true);
      expect(m.redirect).toHaveLength(288);
      expect(m.insert).toHaveLength(26);
      expect(m.redirect.filter((x) => x.outcome === 'error' || x.outcome === 'other')).toEqual([]);
      expect(m.totalMs!).toBeLessThan(120_000);
      expect(doc.kernels[0].comparison.cells.length).toBeGreaterThanOrEqual(144);

      if (m.kernel.startsWith('6.12.')) {
        expect(checkExpectation(m, loadExpectation(path.join(projectRoot, 'data/expected/6.12.json')))).toEqual([]);
        expect(doc.kernels[0].comparison.summary).toEqual({ agree: 144, differ: 0, unmeasured: 0, silentLosses: 12 });
      }

      expect(fs.readFileSync(files.markdown, 'utf8')).toContain('## SOCKMAP support matrix');
      const html = fs.readFileSync(files.html, 'utf8');
      expect(html).toContain('<table class="grid" data-mode="ingress-to-local"');
      expect(html).toContain(`data-kernel="${m.kernel}"`);
    },
    400_000,
  );
});
