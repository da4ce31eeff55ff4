// `npm run doctor` and the runner's pre-boot checks, on a machine that lacks QEMU
// (simulated with a PATH that holds only node).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatChecks } from '../runner/doctor.ts';
import { requirePassing, type Check } from '../vm/preflight.ts';
import { UserError } from '../core/errors.ts';
import { paint } from '../runner/style.ts';
import { cli } from './e2e/cli-helpers.ts';

const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-bare-path-'));
fs.symlinkSync(process.execPath, path.join(bare, 'node'));
afterAll(() => fs.rmSync(bare, { recursive: true, force: true }));

describe('doctor', () => {
  it('passes on this machine (set up by setup.sh)', async () => {
    const { code, out } = await cli(['doctor']).done;
    expect(out).toMatch(/✔ qemu-system-x86_64/);
    expect(out).toMatch(/✔ guest kernel\s+6\.\d+/);
    expect(out).toMatch(/\d+ ok, \d+ warnings?, 0 missing/);
    expect(code).toBe(0);
  });

  it('without qemu, names it and the package that fixes it, and exits 1', async () => {
    const { code, out } = await cli(['doctor'], { PATH: bare }).done;
    expect(out).toMatch(/✖ qemu-system-x86_64\s+missing: runs the lab VM/);
    expect(out).toContain('fix: sudo apt-get install -y qemu-system-x86');
    expect(code).toBe(1);
  });

  it('the runner stops before booting with the same table, not a stack trace', async () => {
    const { code, out } = await cli(['lab', '1'], { PATH: bare }).done;
    expect(code).toBe(2);
    expect(out).toContain('error: ');
    expect(out).toContain('✖ qemu-system-x86_64');
    expect(out).toContain('sudo apt-get install -y qemu-system-x86');
    expect(out).not.toMatch(/\n\s+at .*\.ts:\d+/);
  });
});

describe('requirePassing', () => {
  const p = paint(false);
  const ok: Check = { name: 'a', level: 'ok', detail: 'fine' };
  const warn: Check = { name: 'b', level: 'warn', detail: 'slow' };
  const bad: Check = { name: 'c', level: 'fail', detail: 'gone', fix: 'install c' };

  it('returns the warnings when nothing failed', () => {
    expect(requirePassing([ok, warn], (c) => formatChecks(c, p))).toEqual([warn]);
  });

  it('throws a UserError carrying the fix of a single failure', () => {
    try {
      requirePassing([ok, bad], (c) => formatChecks(c, p));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(UserError);
      expect((e as UserError).fix).toBe('install c');
      expect((e as UserError).details).toContain('✖ c  gone');
    }
  });

  it('formats each check on its line, fixes indented below', () => {
    expect(formatChecks([ok, bad], p)).toBe('✔ a  fine\n✖ c  gone\n     fix: install c');
  });
});
