// lab list / next / reset, as a learner uses them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './cli-helpers.ts';

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-progress-cli-'));
const env = { LAB_STATE_HOME: home };
afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

describe('progress commands', () => {
  it(
    'list shows progress, next runs the first unfinished lab, reset forgets',
    async () => {
      fs.mkdirSync(path.join(home, 'sockmap-labs'), { recursive: true });
      fs.writeFileSync(
        path.join(home, 'sockmap-labs/progress.json'),
        JSON.stringify({ '01-create-map': { status: 'passed', passedSteps: 7, totalSteps: 7, lastRun: '2026-01-01T00:00:00Z' } }),
      );
      let list = await cli(['lab', 'list'], env).done;
      expect(list.out).toMatch(/✓ 01 {2}01-create-map/);
      expect(list.out).toMatch(/– 02 {2}02-attach-program/);
      expect(list.out).toMatch(/1 of \d+ labs passed\. Next: npm run lab next/);

      const next = await cli(['lab', 'next', '--quiet'], env).done;
      expect(next.out).toContain('» next unfinished lab: 02-attach-program');
      expect(next.out).toContain('✔ PASS Lab 02');
      expect(next.code).toBe(0);

      list = await cli(['lab', 'list'], env).done;
      expect(list.out).toMatch(/✓ 02 {2}02-attach-program/);

      expect((await cli(['lab', 'reset', '1'], env).done).out).toContain('forgot the progress of 01-create-map');
      list = await cli(['lab', 'list'], env).done;
      expect(list.out).toMatch(/– 01 {2}01-create-map/);
      expect(list.out).toMatch(/✓ 02 {2}02-attach-program/);

      expect((await cli(['lab', 'reset'], env).done).out).toContain('forgot the progress of 1 lab');
      list = await cli(['lab', 'list'], env).done;
      expect(list.out).toMatch(/0 of \d+ labs passed/);
      expect((await cli(['lab', 'reset', '99'], env).done).code).toBe(2);
    },
    240_000,
  );
});
