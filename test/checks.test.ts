import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { compileRegex, evaluate, type CheckResult } from '../runner/checks.ts';
import { isKnownErrno } from '../runner/errno.ts';
import type { Expect } from '../runner/lab-schema.ts';
import type { ExecResult } from '../vm/backend.ts';

function res(o: Partial<ExecResult> = {}): ExecResult {
  return { code: 0, stdout: '', stderr: '', timedOut: false, durationMs: 12, ...o };
}

const failed = (checks: CheckResult[]) => checks.filter((c) => !c.ok);
const named = (checks: CheckResult[], name: string) => checks.filter((c) => c.name === name);
const allOk = (checks: CheckResult[]) => checks.length > 0 && checks.every((c) => c.ok);

describe('evaluate: exit code', () => {
  it('expects exit 0 by default, with no expect at all', () => {
    const ok = evaluate(undefined, res({ code: 0 }));
    expect(ok).toEqual([{ name: 'exit code', ok: true, expected: '0', got: '0' }]);
    const bad = evaluate(undefined, res({ code: 2 }));
    expect(bad).toEqual([{ name: 'exit code', ok: false, expected: '0', got: '2' }]);
  });

  it('expects exit 0 with an empty expect', () => {
    expect(allOk(evaluate({}, res({ code: 0 })))).toBe(true);
    expect(failed(evaluate({}, res({ code: 1 })))).toHaveLength(1);
  });

  it('checks an exact exit number', () => {
    expect(allOk(evaluate({ exit: 3 }, res({ code: 3 })))).toBe(true);
    const [c] = evaluate({ exit: 3 }, res({ code: 0 }));
    expect(c).toMatchObject({ name: 'exit code', ok: false, expected: '3', got: '0' });
  });

  it('"nonzero" accepts any failure but not success', () => {
    expect(allOk(evaluate({ exit: 'nonzero' }, res({ code: 1 })))).toBe(true);
    expect(allOk(evaluate({ exit: 'nonzero' }, res({ code: 255 })))).toBe(true);
    const [c] = evaluate({ exit: 'nonzero' }, res({ code: 0 }));
    expect(c.ok).toBe(false);
    expect(c.got).toBe('0');
  });

  it('reports a killed command as "killed"', () => {
    const [c] = evaluate({ exit: 0 }, res({ code: null }));
    expect(c).toMatchObject({ ok: false, got: 'killed' });
  });
});

describe('evaluate: errno', () => {
  it('finds the errno by name', () => {
    const r = res({ code: 1, stderr: 'bpf(BPF_MAP_CREATE) = -1 EINVAL (Invalid argument)\n' });
    const checks = evaluate({ errno: 'EINVAL' }, r);
    expect(allOk(checks)).toBe(true);
    expect(named(checks, 'fails with EINVAL')).toHaveLength(1);
  });

  it("finds the errno by glibc's message", () => {
    const r = res({ code: 255, stderr: 'Error: map create failed: Permission denied\n' });
    expect(allOk(evaluate({ errno: 'EACCES' }, r))).toBe(true);
  });

  it('matches the message case-insensitively and in stdout too', () => {
    const r = res({ code: 1, stdout: 'open: permission denied\n' });
    expect(allOk(evaluate({ errno: 'EACCES' }, r))).toBe(true);
  });

  it('fails when neither the name nor the message is printed', () => {
    const r = res({ code: 1, stderr: 'Error: something else went wrong\n' });
    const checks = evaluate({ errno: 'EACCES' }, r);
    const [c] = named(checks, 'fails with EACCES');
    expect(c.ok).toBe(false);
    expect(c.expected).toContain('EACCES');
    expect(c.got).toContain('something else went wrong');
  });

  it('does not match a longer word containing the name', () => {
    const r = res({ code: 1, stderr: 'EACCESS is not a real errno\n' });
    expect(named(evaluate({ errno: 'EACCES' }, r), 'fails with EACCES')[0].ok).toBe(false);
  });

  it('does not confuse two errnos', () => {
    const r = res({ code: 1, stderr: 'Operation not permitted\n' });
    expect(named(evaluate({ errno: 'EACCES' }, r), 'fails with EACCES')[0].ok).toBe(false);
    expect(allOk(evaluate({ errno: 'EPERM' }, r))).toBe(true);
  });

  it('implies a non-zero exit: printing the errno and exiting 0 fails', () => {
    const checks = evaluate({ errno: 'EINVAL' }, res({ code: 0, stderr: 'Invalid argument' }));
    const [exit] = named(checks, 'exit code');
    expect(exit.ok).toBe(false);
    expect(exit.expected).toMatch(/non-zero/);
    expect(named(checks, 'fails with EINVAL')[0].ok).toBe(true);
  });

  it('an explicit exit overrides the implied non-zero', () => {
    expect(allOk(evaluate({ errno: 'ENOENT', exit: 2 }, res({ code: 2, stderr: 'ls: x: No such file or directory' })))).toBe(true);
    expect(allOk(evaluate({ errno: 'ENOENT', exit: 0 }, res({ code: 0, stdout: 'ENOENT handled' })))).toBe(true);
  });

  it('recognises the kernel-internal ENOTSUPP by its message', () => {
    expect(allOk(evaluate({ errno: 'ENOTSUPP' }, res({ code: 1, stderr: 'Error: Unknown error 524' })))).toBe(true);
  });
});

describe('evaluate: stdout, stderr and output', () => {
  it('a string is shorthand for contains', () => {
    const r = res({ stdout: 'Found 0 elements\n' });
    const checks = evaluate({ stdout: 'Found 0 elements' }, r);
    expect(allOk(checks)).toBe(true);
    expect(named(checks, 'stdout contains')).toHaveLength(1);
    const bad = evaluate({ stdout: 'Found 1 element' }, r);
    expect(named(bad, 'stdout contains')[0]).toMatchObject({ ok: false, expected: 'Found 1 element', got: 'Found 0 elements' });
  });

  it('checks every string of a contains list, one check each', () => {
    const r = res({ stdout: 'key: 00 00 00 00  value: <no entry>\nFound 0 elements\n' });
    const checks = evaluate({ stdout: { contains: ['key: 00 00 00 00  value: <no entry>', 'Found 0 elements', 'missing'] } }, r);
    const contains = named(checks, 'stdout contains');
    expect(contains.map((c) => c.ok)).toEqual([true, true, false]);
    expect(contains[2].expected).toBe('missing');
  });

  it('not_contains fails when the text is there', () => {
    const r = res({ stdout: 'value: <no entry>\n' });
    expect(named(evaluate({ stdout: { not_contains: 'oops' } }, r), 'stdout does not contain')[0].ok).toBe(true);
    const [c] = named(evaluate({ stdout: { not_contains: ['<no entry>'] } }, r), 'stdout does not contain');
    expect(c.ok).toBe(false);
    expect(c.expected).toContain('<no entry>');
  });

  it('matches is multi-line: ^ and $ match at line ends', () => {
    const r = res({ stdout: '3: sockmap  name sockmap  flags 0x0\n\tkey 4B  value 8B  max_entries 2\n' });
    const checks = evaluate({ stdout: { matches: ['^\\s*key 4B\\s+value 8B\\s+max_entries 2$', 'sockmap\\s+name sockmap'] } }, r);
    expect(named(checks, 'stdout matches').map((c) => c.ok)).toEqual([true, true]);
    expect(named(evaluate({ stdout: { matches: '^key' } }, r), 'stdout matches')[0].ok).toBe(false);
  });

  it('accepts the /re/flags form', () => {
    const r = res({ stdout: 'Map Created\n' });
    expect(named(evaluate({ stdout: { matches: '/^map created$/i' } }, r), 'stdout matches')[0].ok).toBe(true);
    expect(named(evaluate({ stdout: { matches: '^map created$' } }, r), 'stdout matches')[0].ok).toBe(false);
  });

  it('not_matches fails on a match', () => {
    const r = res({ stdout: 'a\nerror: boom\nb\n' });
    expect(named(evaluate({ stdout: { not_matches: '^warning' } }, r), 'stdout does not match')[0].ok).toBe(true);
    const [c] = named(evaluate({ stdout: { not_matches: ['^error:'] } }, r), 'stdout does not match');
    expect(c.ok).toBe(false);
    expect(c.expected).toContain('^error:');
  });

  it('equals compares with leading and trailing white space trimmed', () => {
    const r = res({ stdout: '\n  sockhash\nsockmap\n\n' });
    expect(named(evaluate({ stdout: { equals: 'sockhash\nsockmap\n' } }, r), 'stdout equals')[0].ok).toBe(true);
    const [c] = named(evaluate({ stdout: { equals: 'sockmap\nsockhash' } }, r), 'stdout equals');
    expect(c.ok).toBe(false);
    expect(c.expected).toBe('sockmap\nsockhash');
  });

  it('equals does not ignore white space inside the text', () => {
    const r = res({ stdout: 'a  b\n' });
    expect(named(evaluate({ stdout: { equals: 'a b' } }, r), 'stdout equals')[0].ok).toBe(false);
  });

  it('checks stderr on its own', () => {
    const r = res({ code: 0, stdout: 'out-text', stderr: 'err-text' });
    expect(named(evaluate({ stderr: 'err-text' }, r), 'stderr contains')[0].ok).toBe(true);
    expect(named(evaluate({ stderr: 'out-text' }, r), 'stderr contains')[0].ok).toBe(false);
    expect(named(evaluate({ stdout: 'err-text' }, r), 'stdout contains')[0].ok).toBe(false);
  });

  it('output is stdout and stderr together', () => {
    const r = res({ stdout: 'out-text\n', stderr: 'err-text\n' });
    const checks = evaluate({ output: { contains: ['out-text', 'err-text'], matches: '^err-text$' } }, r);
    expect(named(checks, 'output contains').map((c) => c.ok)).toEqual([true, true]);
    expect(named(checks, 'output matches')[0].ok).toBe(true);
  });

  it('combines all kinds of check in one result list', () => {
    const e: Expect = {
      exit: 0,
      stdout: { contains: 'a', not_contains: 'z', matches: '^a', not_matches: '^z', equals: 'a' },
      stderr: 'w',
      output: 'a\nw',
    };
    const checks = evaluate(e, res({ stdout: 'a\n', stderr: 'w' }));
    expect(checks.map((c) => c.name)).toEqual([
      'exit code',
      'stdout contains',
      'stdout does not contain',
      'stdout matches',
      'stdout does not match',
      'stdout equals',
      'stderr contains',
      'output contains',
    ]);
    expect(checks.every((c) => c.ok)).toBe(true);
  });

  it('shortens very long output to its end', () => {
    const long = 'x'.repeat(2000) + 'THE-END';
    const [c] = named(evaluate({ stdout: 'nope' }, res({ stdout: long })), 'stdout contains');
    expect(c.got.length).toBeLessThan(500);
    expect(c.got.endsWith('THE-END')).toBe(true);
  });

  it('shows "(nothing)" for empty output', () => {
    const [c] = named(evaluate({ stdout: 'x' }, res({ stdout: '' })), 'stdout contains');
    expect(c.got).toBe('(nothing)');
  });
});

describe('evaluate: timeouts', () => {
  it('a timed-out step gives one failing "finished in time" check and nothing else', () => {
    const r = res({ code: null, timedOut: true, durationMs: 30_000, stdout: 'a', stderr: 'EINVAL' });
    const checks = evaluate({ exit: 0, errno: 'EINVAL', stdout: 'a', stderr: 'x', output: { equals: 'a' } }, r);
    expect(checks).toHaveLength(1);
    expect(checks[0].name).toBe('finished in time');
    expect(checks[0].ok).toBe(false);
    expect(checks[0].got).toContain('30.0 s');
  });

  it('also without an expect', () => {
    const checks = evaluate(undefined, res({ code: null, timedOut: true, durationMs: 1500 }));
    expect(checks).toEqual([expect.objectContaining({ name: 'finished in time', ok: false })]);
  });
});

describe('evaluate: failure reports', () => {
  const cases: [string, Expect | undefined, ExecResult][] = [
    ['exit', { exit: 1 }, res({ code: 0 })],
    ['nonzero', { exit: 'nonzero' }, res({ code: 0 })],
    ['killed', undefined, res({ code: null })],
    ['errno', { errno: 'EPERM' }, res({ code: 0 })],
    ['contains', { stdout: { contains: ['x', 'y'] } }, res({ stdout: '' })],
    ['not_contains', { stderr: { not_contains: 'a' } }, res({ stderr: 'a' })],
    ['matches', { output: { matches: '^b$' } }, res({ stdout: 'a' })],
    ['not_matches', { stdout: { not_matches: '/A/i' } }, res({ stdout: 'a' })],
    ['equals', { stdout: { equals: 'b' } }, res({ stdout: '   ' })],
    ['timeout', { exit: 0 }, res({ code: null, timedOut: true })],
  ];

  it.each(cases)('every failing check names what it expected and what it got (%s)', (_, e, r) => {
    const bad = failed(evaluate(e, r));
    expect(bad.length).toBeGreaterThan(0);
    for (const c of bad) {
      expect(c.name).not.toBe('');
      expect(c.expected.trim()).not.toBe('');
      expect(c.got.trim()).not.toBe('');
    }
  });

  // BUG (runner/checks.ts, checkText, the `equals` line): with `equals: ""`
  // (the step must print nothing) a failing check reports expected: "" —
  // the report shows an empty "expected" instead of e.g. "(nothing)".
  it('a failing `equals: ""` check says what it expected', () => {
    const [c] = named(evaluate({ stdout: { equals: '' } }, res({ stdout: 'unexpected\n' })), 'stdout equals');
    expect(c.ok).toBe(false);
    expect(c.expected.trim()).not.toBe('');
  });
});

describe('compileRegex', () => {
  it('is multi-line by default', () => {
    const re = compileRegex('^b$');
    expect(re.flags).toContain('m');
    expect(re.test('a\nb\nc')).toBe(true);
  });

  it('takes flags from the /re/flags form and keeps it multi-line', () => {
    const re = compileRegex('/^B$/i');
    expect(re.source).toBe('^B$');
    expect(re.flags).toBe('im');
    expect(compileRegex('/x/m').flags).toBe('m');
  });

  it('throws on a bad regex', () => {
    expect(() => compileRegex('a(b')).toThrow(SyntaxError);
  });
});

describe('errno table', () => {
  it('has a message for every errno Node knows on this platform', () => {
    // EWOULDBLOCK, EDEADLOCK and ENOTSUP are other names of EAGAIN, EDEADLK and EOPNOTSUPP.
    const aliases = ['EWOULDBLOCK', 'EDEADLOCK', 'ENOTSUP'];
    expect(Object.keys(os.constants.errno).filter((n) => !isKnownErrno(n) && !aliases.includes(n))).toEqual([]);
  });
});
