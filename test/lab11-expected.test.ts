// Lab 11 compares every cell of the matrix it measures with
// labs/11-support-matrix/expected/<kernel>.txt, in the guest, with
// compare-cells.awk (the guest has no node). Here, on the host: those files
// say what data/expected/ and data/measured/ say, and the awk script finds
// every differing cell (and only those) in the recorded runs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../core/paths.ts';
import { INSERT_KINDS, MODES, REDIRECT_KINDS, parseProbeOutput, type Matrix } from '../runner/matrix/model.ts';
import { checkExpectation, loadExpectation } from './matrix-expect.ts';

const lab = path.join(projectRoot, 'labs/11-support-matrix');
const measured = (kernel: string) => path.join(projectRoot, 'data/measured', `${kernel}.jsonl`);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-lab11-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** An expected/*.txt file in test/matrix-expect.ts's form. */
function readLabExpectation(version: string) {
  const redirect: Record<string, Record<string, string>> = {};
  const insert: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(lab, 'expected', `${version}.txt`), 'utf8').split('\n')) {
    if (/^\s*(#|$)/.test(line)) continue;
    const w = line.trim().split(/\s+/);
    if (w[0] === 'insert') {
      expect(w, line).toHaveLength(3);
      insert[w[1]] = w[2];
    } else {
      expect(w, line).toHaveLength(2 + REDIRECT_KINDS.length);
      (redirect[w[0]] ??= {})[w[1]] = w.slice(2).join(' ');
    }
  }
  return { kernel: version, maps: ['sockmap', 'sockhash'] as ('sockmap' | 'sockhash')[], redirect, insert };
}

const readMatrix = (file: string): Matrix => parseProbeOutput(fs.readFileSync(file, 'utf8'))!;

const compare = (version: string, jsonl: string) => execFileSync('awk', ['-f', path.join(lab, 'compare-cells.awk'), path.join(lab, 'expected', `${version}.txt`), jsonl], { encoding: 'utf8' });

describe("lab 11's expectations", () => {
  it('name every cell: each mode and in socket, each insert kind', () => {
    for (const v of ['6.12', '6.1']) {
      const e = readLabExpectation(v);
      expect(Object.keys(e.redirect).sort(), v).toEqual([...MODES].sort());
      for (const m of MODES) expect(Object.keys(e.redirect[m]).sort(), `${v} ${m}`).toEqual([...REDIRECT_KINDS].sort());
      expect(Object.keys(e.insert).sort(), v).toEqual([...INSERT_KINDS].sort());
    }
  });

  it('6.12.txt says what data/expected/6.12.json says', () => {
    const json = loadExpectation(path.join(projectRoot, 'data/expected/6.12.json'));
    const norm = (r: Record<string, Record<string, string> | undefined>) =>
      Object.fromEntries(Object.entries(r).map(([m, rows]) => [m, Object.fromEntries(Object.entries(rows!).map(([k, v]) => [k, v.trim().split(/\s+/).join(' ')]))]));
    const txt = readLabExpectation('6.12');
    expect(json.maps).toEqual(['sockmap', 'sockhash']);
    expect(norm(txt.redirect)).toEqual(norm(json.redirect));
    expect(txt.insert).toEqual(json.insert);
  });

  it('each file agrees with its kernel measured run, cell by cell', () => {
    expect(checkExpectation(readMatrix(measured('6.12.117+deb12-amd64')), readLabExpectation('6.12'))).toEqual([]);
    expect(checkExpectation(readMatrix(measured('6.1.0-56-amd64')), readLabExpectation('6.1'))).toEqual([]);
  });
});

describe('compare-cells.awk', () => {
  it('finds nothing unexpected in the run each expectation was made from', () => {
    expect(compare('6.12', measured('6.12.117+deb12-amd64'))).toBe('314 cells compared, 0 unexpected\n');
    expect(compare('6.1', measured('6.1.0-56-amd64'))).toBe('314 cells compared, 0 unexpected\n');
  });

  it('names each cell that differs, as checkExpectation does', () => {
    const out = compare('6.12', measured('6.1.0-56-amd64'));
    const fromTs = checkExpectation(readMatrix(measured('6.1.0-56-amd64')), readLabExpectation('6.12'));
    const lines = out.trim().split('\n');
    expect(lines.at(-1)).toBe(`314 cells compared, ${fromTs.length} unexpected`);
    expect(fromTs.length).toBeGreaterThan(100);
    // "sockmap ingress-to-local tcp→vsock-stream: expected lost, got insert-dst:EOPNOTSUPP" in both.
    expect(lines.slice(0, -1).map((l) => l.replace(/^unexpected: /, '').replace('->', '→')).sort()).toEqual([...fromTs].sort());
  });

  it('catches one changed cell, and a missing one', () => {
    const lines = fs.readFileSync(measured('6.12.117+deb12-amd64'), 'utf8').split('\n');
    const one = lines.findIndex((l) => l.includes('"map":"sockhash","mode":"ingress-to-local","src":"udp","dst":"vsock-stream"'));
    const gone = lines.findIndex((l) => l.includes('"probe":"insert","map":"sockmap","kind":"tcp-listen"'));
    expect(one).toBeGreaterThan(0);
    expect(gone).toBeGreaterThan(0);
    lines[one] = lines[one].replace('"outcome":"lost"', '"outcome":"works"');
    lines.splice(gone, 1);
    const file = path.join(tmp, 'doctored.jsonl');
    fs.writeFileSync(file, lines.join('\n'));
    expect(compare('6.12', file)).toBe(
      [
        'unexpected: sockhash ingress-to-local udp->vsock-stream: expected lost, got works',
        'unexpected: sockmap insert tcp-listen: expected accepted, got missing',
        '314 cells compared, 2 unexpected',
        '',
      ].join('\n'),
    );
  });
});
