import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LabResult } from '../runner/executor.ts';
import { loadProgress, nextLab, recordResult, resetProgress, saveProgress, type Progress } from '../runner/progress.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-progress-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const result = (id: string, status: LabResult['status'], passed = 2, total = 2): LabResult =>
  ({
    lab: { id },
    status,
    steps: Array.from({ length: total }, (_, i) => ({ status: i < passed ? 'passed' : 'failed' })),
    durationMs: 1,
    machine: { kernelRelease: '6.12.1', backend: 'qemu', accel: 'tcg' },
  }) as unknown as LabResult;

describe('progress store', () => {
  it('saves and loads, privately', () => {
    const file = path.join(dir, 'a/progress.json');
    const p = recordResult({}, result('01-a', 'passed'), new Date('2026-01-01T00:00:00Z'));
    saveProgress(p, file);
    expect(loadProgress(file)).toEqual(p);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(loadProgress(path.join(dir, 'missing.json'))).toEqual({});
  });

  it('records steps passed, keeps the first pass, and a skip never hides a pass', () => {
    let p: Progress = {};
    p = recordResult(p, result('01-a', 'failed', 1, 3), new Date('2026-01-01T00:00:00Z'));
    expect(p['01-a']).toMatchObject({ status: 'failed', passedSteps: 1, totalSteps: 3, firstPassed: undefined });
    p = recordResult(p, result('01-a', 'passed', 3, 3), new Date('2026-01-02T00:00:00Z'));
    p = recordResult(p, result('01-a', 'failed', 0, 3), new Date('2026-01-03T00:00:00Z'));
    expect(p['01-a']).toMatchObject({ status: 'failed', firstPassed: '2026-01-02T00:00:00.000Z' });
    p = recordResult(p, result('01-a', 'passed', 3, 3));
    p = recordResult(p, result('01-a', 'skipped', 0, 3));
    expect(p['01-a'].status).toBe('passed');
  });

  it('next is the first lab not passed; reset forgets one or all', () => {
    const p: Progress = {};
    recordResult(p, result('01-a', 'passed'));
    recordResult(p, result('02-b', 'failed'));
    expect(nextLab(['01-a', '02-b', '03-c'], p)).toBe('02-b');
    recordResult(p, result('02-b', 'passed'));
    expect(nextLab(['01-a', '02-b', '03-c'], p)).toBe('03-c');
    recordResult(p, result('03-c', 'passed'));
    expect(nextLab(['01-a', '02-b', '03-c'], p)).toBeUndefined();
    expect(resetProgress(p, '02-b')).toBe(1);
    expect(resetProgress(p, '02-b')).toBe(0);
    expect(nextLab(['01-a', '02-b', '03-c'], p)).toBe('02-b');
    expect(resetProgress(p)).toBe(2);
    expect(p).toEqual({});
  });
});
