import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../core/errors.ts';
import { projectRoot } from '../core/paths.ts';
import { discoverLabs, LabFileError, loadLab, parseLab, selectLabs, type LabRef } from '../runner/labs.ts';

const FILE = path.join(os.tmpdir(), 'sml-labs-test', '07-sample', 'lab.yaml');

/** Lines joined with newlines: line numbers in tests read off the array index + 1. */
const yaml = (...lines: string[]) => lines.join('\n') + '\n';

/** The LabFileError parseLab throws for `text`. */
function labError(text: string): LabFileError {
  try {
    parseLab(text, FILE);
  } catch (e) {
    expect(e).toBeInstanceOf(LabFileError);
    expect(e).toBeInstanceOf(UserError);
    return e as LabFileError;
  }
  throw new Error('expected a LabFileError, the lab parsed');
}

const VALID = yaml(
  'title: A sample lab', // 1
  'needs:', // 2
  '  kernel: "5.15"', // 3
  '  config: [BPF_SYSCALL, NET_SOCK_MSG]', // 4
  'text: |', // 5
  '  # Hello', // 6
  '  Some *text*.', // 7
  'cleanup: rm -rf "$PIN"', // 8
  'steps:', // 9
  '  - title: Create', // 10
  '    run: bpftool map create $PIN/m type sockmap key 4 value 8 entries 2 name m', // 11
  '    expect:', // 12
  '      exit: 0', // 13
  '  - title: Fail', // 14
  '    text: It fails.', // 15
  '    run: |', // 16
  '      false', // 17
  '    timeout: 5', // 18
  '    expect:', // 19
  '      errno: EACCES', // 20
  '      stdout:', // 21
  '        matches: ["^a$", "/b/i"]', // 22
  '        not_contains: x', // 23
  '      stderr: oops', // 24
  '      output: { equals: "ab" }', // 25
  '  - title: Server', // 26
  '    run: sleep 100', // 27
  '    background: server', // 28
  '    ready: listening', // 29
);

describe('parseLab', () => {
  it('parses a valid lab', () => {
    const lab = parseLab(VALID, FILE);
    expect(lab.title).toBe('A sample lab');
    expect(lab.needs).toEqual({ kernel: '5.15', config: ['BPF_SYSCALL', 'NET_SOCK_MSG'] });
    expect(lab.text).toBe('# Hello\nSome *text*.\n');
    expect(lab.cleanup).toBe('rm -rf "$PIN"');
    expect(lab.steps).toHaveLength(3);
    expect(lab.steps[0]).toEqual({
      title: 'Create',
      run: 'bpftool map create $PIN/m type sockmap key 4 value 8 entries 2 name m',
      expect: { exit: 0 },
    });
    expect(lab.steps[1].run).toBe('false\n');
    expect(lab.steps[1].timeout).toBe(5);
    expect(lab.steps[1].expect).toEqual({
      errno: 'EACCES',
      stdout: { matches: ['^a$', '/b/i'], not_contains: 'x' },
      stderr: 'oops',
      output: { equals: 'ab' },
    });
    expect(lab.steps[2]).toMatchObject({ background: 'server', ready: 'listening' });
  });

  it('needs only a title and one step', () => {
    const lab = parseLab(yaml('title: T', 'steps:', '  - title: s', '    run: "true"'), FILE);
    expect(lab.steps).toEqual([{ title: 's', run: 'true' }]);
  });

  it('rejects an unknown key, naming it, the file and its line', () => {
    const err = labError(yaml('title: T', 'steps:', '  - title: a', '    run: echo', 'bogus: 1'));
    expect(err.message).toContain('bogus');
    expect(err.message).toContain('lab.yaml:5:');
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0].file).toMatch(/07-sample[/\\]lab\.yaml$/);
    expect(err.fix).toBeTruthy();
  });

  it('gives the right line for an unknown key that starts its mapping', () => {
    const err = labError(yaml('title: T', 'steps:', '  - title: a', '    run: echo', '  - bogus: 1', '    title: b', '    run: echo'));
    expect(err.message).toContain('lab.yaml:5:');
    expect(err.message).toContain('bogus');
  });

  // zod reports an unknown key at the path of the object that holds it; the
  // line must still be the key's own, not the object's first line.
  it('gives the line of an unknown key inside a step', () => {
    const err = labError(yaml('title: T', 'steps:', '  - title: a', '    run: echo', '    timout: 5'));
    expect(err.message).toContain('lab.yaml:5:');
  });

  it('gives the line of an unknown key inside expect', () => {
    const err = labError(yaml('title: T', 'steps:', '  - title: a', '    run: echo', '    expect:', '      exit: 0', '      sdtout: x'));
    expect(err.message).toContain('lab.yaml:7:');
  });

  it('rejects a step without run, at the step', () => {
    const err = labError(yaml('title: T', 'steps:', '  - title: first', '    run: echo', '  - title: second', '    text: no command'));
    expect(err.message).toContain('steps.1.run');
    expect(err.message).toContain('lab.yaml:5:');
    expect(err.problems[0].line).toBe(5);
  });

  it('rejects a lab without steps', () => {
    const err = labError(yaml('title: T'));
    expect(err.message).toContain('steps');
  });

  it('names the line of a bad regular expression', () => {
    const err = labError(
      yaml('title: T', 'steps:', '  - title: a', '    run: echo', '    expect:', '      stdout:', '        matches: "a(b"'),
    );
    expect(err.message).toContain('lab.yaml:7:');
    expect(err.message).toContain('steps.0.expect.stdout.matches');
    expect(err.message).toMatch(/bad regular expression/);
  });

  it('checks regexes in not_matches and in a list', () => {
    const err = labError(
      yaml('title: T', 'steps:', '  - title: a', '    run: echo', '    expect:', '      output:', '        not_matches: ["ok", "[z"]'),
    );
    expect(err.message).toContain('lab.yaml:7:');
    expect(err.message).toContain('steps.0.expect.output.not_matches');
  });

  it('rejects an unknown errno, at its line', () => {
    const err = labError(yaml('title: T', 'steps:', '  - title: a', '    run: echo', '    expect:', '      errno: EFOO'));
    expect(err.message).toContain('unknown errno EFOO');
    expect(err.message).toContain('lab.yaml:6:');
  });

  it('rejects an errno that is not a name', () => {
    const err = labError(yaml('title: T', 'steps:', '  - title: a', '    run: echo', '    expect:', '      errno: Permission denied'));
    expect(err.message).toContain('lab.yaml:6:');
  });

  it('rejects "ready" without "background" (a step with expect)', () => {
    const err = labError(yaml('title: T', 'steps:', '  - title: a', '    run: echo', '    ready: up', '    expect:', '      exit: 0'));
    expect(err.message).toContain('"ready" needs "background"');
    expect(err.message).toContain('lab.yaml:5:');
  });

  // BUG (runner/labs.ts, semanticProblems): `if (!e) return;` leaves the
  // forEach callback before the ready/background check, so a step without an
  // `expect` may have `ready` and no `background`, and the lab loads.
  it('rejects "ready" without "background" (a step without expect)', () => {
    const err = labError(yaml('title: T', 'steps:', '  - title: a', '    run: echo', '    ready: up'));
    expect(err.message).toContain('"ready" needs "background"');
  });

  it('rejects a YAML syntax error, with its file:line', () => {
    const err = labError(yaml('title: T', 'text: x', 'steps:', '  - title: a', '    run: echo: x'));
    expect(err.message).toContain('lab.yaml:5: ');
    expect(err.problems[0].line).toBe(5);
  });
});

function makeRefs(): LabRef[] {
  return ['01-create-map', '02-attach-program', '10-redirect'].map((id) => {
    const [, n, slug] = /^(\d+)-(.*)$/.exec(id)!;
    return { id, number: Number(n), slug, dir: `/labs/${id}`, file: `/labs/${id}/lab.yaml` };
  });
}

describe('selectLabs', () => {
  const refs = makeRefs();

  it('picks by number, with or without a leading zero', () => {
    expect(selectLabs(refs, ['1'])).toEqual([refs[0]]);
    expect(selectLabs(refs, ['01'])).toEqual([refs[0]]);
    expect(selectLabs(refs, ['10'])).toEqual([refs[2]]);
  });

  it('picks by folder name and by slug', () => {
    expect(selectLabs(refs, ['02-attach-program'])).toEqual([refs[1]]);
    expect(selectLabs(refs, ['attach-program'])).toEqual([refs[1]]);
  });

  it('keeps the order asked for', () => {
    expect(selectLabs(refs, ['10', 'create-map'])).toEqual([refs[2], refs[0]]);
  });

  it('"all", or nothing, picks every lab', () => {
    expect(selectLabs(refs, ['all'])).toEqual(refs);
    expect(selectLabs(refs, [])).toEqual(refs);
  });

  it('an unknown lab is a UserError listing the labs', () => {
    for (const w of ['99', 'nope']) {
      let err: unknown;
      try {
        selectLabs(refs, ['1', w]);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UserError);
      const msg = (err as UserError).message;
      expect(msg).toContain(`"${w}"`);
      for (const r of refs) expect(msg).toContain(r.id);
      expect((err as UserError).fix).toContain('npm run lab');
    }
  });
});

describe('discoverLabs', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sml-discover-'));
    const lab = (name: string, withFile = true) => {
      fs.mkdirSync(path.join(dir, name), { recursive: true });
      if (withFile) fs.writeFileSync(path.join(dir, name, 'lab.yaml'), 'title: x\n');
    };
    lab('10-ten');
    lab('02-two');
    lab('01-one');
    lab('3-three');
    lab('04-no-file', false);
    lab('notes');
    lab('05_underscore');
    lab('06-Upper');
    fs.writeFileSync(path.join(dir, 'README.md'), '# labs\n');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finds NN-name folders with a lab.yaml, sorted by number', () => {
    const refs = discoverLabs(dir);
    expect(refs.map((r) => r.id)).toEqual(['01-one', '02-two', '3-three', '10-ten']);
    expect(refs[3]).toEqual({ id: '10-ten', number: 10, slug: 'ten', dir: path.join(dir, '10-ten'), file: path.join(dir, '10-ten', 'lab.yaml') });
  });

  it('finds nothing in a folder that does not exist', () => {
    expect(discoverLabs(path.join(dir, 'missing'))).toEqual([]);
  });
});

describe('the labs in this checkout', () => {
  // The checkout's own labs folder, whatever LABS_DIR says.
  const refs = discoverLabs(path.join(projectRoot, 'labs'));

  it('exist', () => {
    expect(refs.length).toBeGreaterThan(0);
    expect(refs.map((r) => r.number)).toEqual([...refs.map((r) => r.number)].sort((a, b) => a - b));
  });

  // loadLab throws on anything the format forbids (no title, no steps, "ready" without "background"…).
  it.each(refs.map((r) => [r.id, r] as const))('%s loads without error', (_, ref) => {
    expect(() => loadLab(ref)).not.toThrow();
  });
});
