// The support matrix without a VM: reading the probe's JSON lines, the
// comparison with the talk's cheat sheet, the diff between kernels, the
// tables, and the recorded 6.12 run against its hand-written expectation.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareWithCheatsheet, kindsOf, loadCheatsheet, predicts, summarize, type Cheatsheet } from '../runner/matrix/cheatsheet.ts';
import { changeSummary, diffMatrices } from '../runner/matrix/diff.ts';
import { cellWord, checkExpectation, loadExpectation } from './matrix-expect.ts';
import {
  findMatrices,
  findRedirect,
  labelMatrices,
  MAPS,
  MODES,
  parseProbeOutput,
  ProbeOutputError,
  REDIRECT_KINDS,
  type InsertProbe,
  type Matrix,
  type RedirectProbe,
} from '../runner/matrix/model.ts';
import { probeCommand } from '../runner/matrix/command.ts';
import { reportJson, reportMarkdown, terminalComparison, terminalDiff, terminalMatrix } from '../runner/matrix/render.ts';
import { paint } from '../runner/style.ts';
import { projectRoot } from '../core/paths.ts';

const data = (f: string) => path.join(projectRoot, 'data', f);
const p = paint(false);

/** A synthetic matrix: every cell `works`, then the overrides ("sockmap/ingress-to-local/udp/vsock-stream"). */
function synthetic(kernel: string, overrides: Record<string, Partial<RedirectProbe>> = {}, inserts: Partial<InsertProbe>[] = []): Matrix {
  const redirect: RedirectProbe[] = [];
  for (const map of MAPS)
    for (const mode of MODES)
      for (const src of REDIRECT_KINDS)
        for (const dst of REDIRECT_KINDS) {
          const o = overrides[`${map}/${mode}/${src}/${dst}`] ?? overrides[`*/${mode}/${src}/${dst}`] ?? {};
          redirect.push({ probe: 'redirect', map, mode, src, dst, outcome: 'works', ms: 1, ...o } as RedirectProbe);
        }
  const insert = inserts.map((i) => ({ probe: 'insert', map: 'sockmap', kind: 'tcp', outcome: 'accepted', ms: 0.1, ...i }) as InsertProbe);
  return { kernel, label: kernel, attached: true, waitMs: 2000, redirect, insert, probes: redirect.length + insert.length, totalMs: 1234 };
}

const sheet: Cheatsheet = loadCheatsheet();

describe('reading the probe output', () => {
  const text = [
    'modprobe chatter',
    '{"probe":"start","kernel":"6.12.1","machine":"x86_64","attached":true,"wait_ms":2000}',
    '{"probe":"redirect","map":"sockmap","mode":"send-to-local","src":"tcp","dst":"udp","outcome":"works","sender":"in0","target":"out0","path":"in1","arrived":["out0"],"verdict":{"pass":1,"drop":0},"ms":3.04}',
    '{"probe":"redirect","map":"sockhash","mode":"send-to-egress","src":"tcp","dst":"udp","outcome":"refused","stage":"send","errno":"EACCES","error":"Permission denied","sender":"in0","target":"out1","path":"in1","arrived":[],"verdict":{"pass":0,"drop":1},"ms":0.74}',
    '{"probe":"insert","map":"sockmap","kind":"vsock-dgram","outcome":"refused","stage":"socket","errno":"ENODEV","error":"No such device","ms":0.10}',
    '{"probe":"end","probes":3,"ms":12.5}',
    '',
    'SOCKMAP, send to local (SK_MSG, BPF_F_INGRESS)   (row: in socket, column: out socket)',
  ].join('\n');

  it('keeps the JSON lines and ignores the rest', () => {
    const m = parseProbeOutput(text)!;
    expect(m.kernel).toBe('6.12.1');
    expect(m.attached).toBe(true);
    expect(m.redirect).toHaveLength(2);
    expect(m.redirect[1]).toMatchObject({ map: 'sockhash', outcome: 'refused', stage: 'send', errno: 'EACCES' });
    expect(m.insert[0]).toMatchObject({ kind: 'vsock-dgram', stage: 'socket', errno: 'ENODEV' });
    expect(m.probes).toBe(3);
    expect(m.totalMs).toBe(12.5);
  });

  it('has no matrix without a start line, and no end without an end line', () => {
    expect(parseProbeOutput('nothing here\n')).toBeUndefined();
    expect(parseProbeOutput(text.split('\n').slice(0, 4).join('\n'))!.probes).toBeUndefined();
  });

  it('rejects a probe line of the wrong shape, saying which line', () => {
    const bad = text.replace('"outcome":"works"', '"outcome":"maybe"');
    expect(() => parseProbeOutput(bad)).toThrow(ProbeOutputError);
    expect(() => parseProbeOutput(bad)).toThrow(/line 3/);
  });

  it('finds each run of the probe in a step output', () => {
    const two = `${text}\n${text.replace('6.12.1', '6.1.0')}`;
    expect(findMatrices(two).map((m) => m.kernel)).toEqual(['6.12.1', '6.1.0']);
  });

  it('labels a repeated kernel apart', () => {
    expect(labelMatrices([synthetic('6.12'), synthetic('6.1'), synthetic('6.12')]).map((m) => m.label)).toEqual(['6.12', '6.1', '6.12 #2']);
  });

  it('quotes the probe arguments for the guest shell', () => {
    expect(probeCommand(['--mode', 'send-to-local', "it's"])).toBe("modprobe vsock_loopback 2>/dev/null\nsockmap-matrix --mode send-to-local 'it'\\''s'");
  });
});

describe('the cheat sheet', () => {
  it('is the talk slide, with its source', () => {
    expect(sheet.source.slide).toBe('Cheatsheet - Redirect with SOCKMAP');
    expect(sheet.rows.map((r) => [r.mode, r.in, r.out])).toEqual([
      ['send-to-local', 'TCP', 'any but VSOCK'],
      ['send-to-egress', 'TCP', 'TCP'],
      ['ingress-to-egress', 'any', 'any'],
      ['ingress-to-local', 'any', 'any but VSOCK'],
    ]);
  });

  it('reads "any", "any but X" and family names', () => {
    expect([...kindsOf('any', sheet.families)]).toEqual([...REDIRECT_KINDS]);
    expect([...kindsOf('any but VSOCK', sheet.families)]).toEqual(['tcp', 'udp', 'unix-stream', 'unix-dgram']);
    expect([...kindsOf('TCP', sheet.families)]).toEqual(['tcp']);
    expect([...kindsOf('TCP, UNIX', sheet.families)]).toEqual(['tcp', 'unix-stream', 'unix-dgram']);
    expect(() => kindsOf('SCTP', sheet.families)).toThrow(/none of its families/);
    const local = sheet.rows[0];
    expect(predicts(local, sheet.families, 'tcp', 'udp')).toBe(true);
    expect(predicts(local, sheet.families, 'tcp', 'vsock-stream')).toBe(false);
    expect(predicts(local, sheet.families, 'udp', 'tcp')).toBe(false);
  });
});

describe('comparing a matrix with the cheat sheet', () => {
  // What the slide says, exactly: works where it says so, refused elsewhere…
  const agreeing = (): Record<string, Partial<RedirectProbe>> => {
    const o: Record<string, Partial<RedirectProbe>> = {};
    for (const row of sheet.rows)
      for (const src of REDIRECT_KINDS)
        for (const dst of REDIRECT_KINDS)
          if (!predicts(row, sheet.families, src, dst)) o[`*/${row.mode}/${src}/${dst}`] = { outcome: 'refused', stage: 'send', errno: 'EACCES' };
    return o;
  };

  it('agrees everywhere when the kernel does what the slide says', () => {
    const cs = compareWithCheatsheet(synthetic('6.12.1', agreeing()), sheet);
    expect(cs).toHaveLength(4 * 36); // SOCKMAP and SOCKHASH agree: one line per cell
    expect(summarize(cs)).toEqual({ agree: 144, differ: 0, unmeasured: 0, silentLosses: 0 });
    expect(cs.every((c) => c.maps.length === 2)).toBe(true);
  });

  it('lists every difference in words, and a silent loss as an agreement', () => {
    const o = agreeing();
    // The kernel redirects where the slide says no; loses bytes where it says no; refuses where it says yes.
    o['*/send-to-egress/tcp/udp'] = { outcome: 'works' };
    o['*/ingress-to-local/udp/vsock-stream'] = { outcome: 'lost', verdict: { pass: 0, drop: 1 } };
    o['*/ingress-to-egress/unix-dgram/tcp'] = { outcome: 'refused', stage: 'insert-src', errno: 'EOPNOTSUPP' };
    const cs = compareWithCheatsheet(synthetic('6.12.1', o), sheet);
    const differ = cs.filter((c) => c.agrees === false).map((c) => c.sentence);
    expect(differ).toEqual([
      'kernel 6.12.1: send to egress TCP→UDP works; cheat sheet: out socket: TCP — DIFFERS',
      'kernel 6.12.1: ingress to egress UNIX dgram→TCP refused at inserting the in socket with EOPNOTSUPP; cheat sheet: works (any → any) — DIFFERS',
    ]);
    const loss = cs.find((c) => c.mode === 'ingress-to-local' && c.src === 'udp' && c.dst === 'vsock-stream')!;
    expect(loss.agrees).toBe(true);
    expect(loss.sentence).toBe(
      'kernel 6.12.1: ingress to local UDP→VSOCK stream lost (no error, no bytes; the program returned SK_DROP); cheat sheet: out socket: any but VSOCK — agrees (but silently: no error tells the sender)',
    );
    expect(summarize(cs)).toMatchObject({ agree: 142, differ: 2, silentLosses: 1 });
  });

  it('speaks for each map apart when they answer differently, and leaves unmeasured cells open', () => {
    const o = agreeing();
    o['sockhash/send-to-local/tcp/udp'] = { outcome: 'lost' };
    o['*/ingress-to-egress/vsock-stream/tcp'] = { outcome: 'error', stage: 'socket', errno: 'ETIMEDOUT' };
    const cs = compareWithCheatsheet(synthetic('6.12.1', o), sheet);
    const cell = cs.filter((c) => c.mode === 'send-to-local' && c.src === 'tcp' && c.dst === 'udp');
    expect(cell.map((c) => [c.maps, c.agrees])).toEqual([
      [['sockmap'], true],
      [['sockhash'], false],
    ]);
    expect(cell[1].sentence).toContain('kernel 6.12.1, SOCKHASH: send to local TCP→UDP lost');
    const hole = cs.find((c) => c.mode === 'ingress-to-egress' && c.src === 'vsock-stream' && c.dst === 'tcp')!;
    expect(hole.agrees).toBeUndefined();
    expect(hole.sentence).toMatch(/not measured: ETIMEDOUT at socket\(\).* — not measured$/);
  });

  it('is printed with the differences and the counts', () => {
    const o = agreeing();
    o['*/send-to-egress/tcp/udp'] = { outcome: 'works' };
    const text = terminalComparison(synthetic('6.12.1', o), sheet, p);
    expect(text).toContain('144 cells: 143 agree, 1 differ');
    expect(text).toContain('≠ kernel 6.12.1: send to egress TCP→UDP works; cheat sheet: out socket: TCP — DIFFERS');
    expect(terminalComparison(synthetic('6.12.1', agreeing()), sheet, p)).toContain('no cell differs from the cheat sheet');
  });
});

describe('the diff between kernels', () => {
  const a = synthetic(
    '6.1.0',
    {
      '*/ingress-to-egress/tcp/vsock-stream': { outcome: 'refused', stage: 'insert-dst', errno: 'EOPNOTSUPP' },
      '*/ingress-to-local/tcp/vsock-stream': { outcome: 'refused', stage: 'insert-dst', errno: 'EOPNOTSUPP' },
      'sockmap/send-to-egress/tcp/udp': { outcome: 'works' },
    },
    [{ kind: 'vsock-stream', outcome: 'refused', stage: 'insert', errno: 'EOPNOTSUPP' }],
  );
  const b = synthetic(
    '6.12.1',
    {
      '*/ingress-to-local/tcp/vsock-stream': { outcome: 'lost', ms: 120 },
      'sockmap/send-to-egress/tcp/udp': { outcome: 'refused', stage: 'send', errno: 'EACCES' },
      'sockhash/send-to-egress/tcp/udp': { outcome: 'works', ms: 99 }, // only the time differs: no change
    },
    [{ kind: 'vsock-stream', outcome: 'accepted' }],
  );

  it('lists each changed cell once, both maps together when alike', () => {
    const d = diffMatrices(a, b);
    expect(d.changes.map((c) => c.sentence)).toEqual([
      'send to egress TCP→UDP (SOCKMAP): 6.1.0: works; 6.12.1: refused at send() with EACCES',
      'ingress to egress TCP→VSOCK stream (SOCKMAP, SOCKHASH): 6.1.0: refused at inserting the target with EOPNOTSUPP; 6.12.1: works',
      'ingress to local TCP→VSOCK stream (SOCKMAP, SOCKHASH): 6.1.0: refused at inserting the target with EOPNOTSUPP; 6.12.1: lost (no error, no bytes)',
      'insert VSOCK stream (SOCKMAP): 6.1.0: refused at insert with EOPNOTSUPP; 6.12.1: accepted',
    ]);
    expect(d.changed).toBe(6);
    expect(d.same).toBe(2 * 4 * 36 - 5);
    expect(changeSummary(d)[0]).toEqual({ before: 'refused at inserting the target with EOPNOTSUPP', after: 'works', cells: 2 });
  });

  it('says "not measured" for a cell only one kernel has, and nothing for equal matrices', () => {
    const partial = { ...b, redirect: b.redirect.filter((x) => x.mode !== 'ingress-to-egress') };
    const d = diffMatrices(a, partial);
    expect(d.changes.find((c) => c.mode === 'ingress-to-egress' && c.src === 'udp' && c.dst === 'udp')?.after).toBe('not measured');
    const same = diffMatrices(a, { ...a, label: 'again' });
    expect(same.changes).toEqual([]);
    expect(terminalDiff(same, p)).toContain('no cell changed');
  });

  it('is printed as a summary and cell by cell', () => {
    const text = terminalDiff(diffMatrices(a, b), p);
    expect(text).toContain('Kernel 6.1.0 → kernel 6.12.1 (6 cells changed');
    expect(text).toMatch(/2 × refused at inserting the target with EOPNOTSUPP {2}→ {2}works/);
    expect(text).toContain('Δ send to egress TCP→UDP (SOCKMAP): 6.1.0: works; 6.12.1: refused at send() with EACCES');
  });
});

describe('tables and files', () => {
  const m = parseProbeOutput(fs.readFileSync(data('measured/6.12.117+deb12-amd64.jsonl'), 'utf8'))!;

  it('prints one grid per mode, both maps in one when they agree', () => {
    const t = terminalMatrix(m, p);
    expect(t).toContain('SOCKMAP and SOCKHASH · ingress to local');
    expect(t).toMatch(/^ {2}udp +✔ works +✔ works +✔ works +✔ works +∅ lost +∅ lost$/m);
    expect(t).toMatch(/^ {2}tcp +✔ works +✖ EACCES +✖ EACCES/m);
    expect(t).toMatch(/UNIX seqpacket +✖ EOPNOTSUPP \(insert\) +✖ EOPNOTSUPP \(insert\)/);
    expect(t).toMatch(/314 probes in \d+\.\d s in the guest/);
  });

  it('splits a grid by map when the maps differ', () => {
    const o = synthetic('x', { 'sockhash/send-to-local/tcp/udp': { outcome: 'lost' } });
    const t = terminalMatrix(o, p);
    expect(t).toContain('SOCKMAP · send to local');
    expect(t).toContain('SOCKHASH · send to local');
    expect(t).toContain('SOCKMAP and SOCKHASH · send to egress');
  });

  it('writes markdown and JSON with the comparison and the diffs', () => {
    const old = parseProbeOutput(fs.readFileSync(data('measured/6.1.0-56-amd64.jsonl'), 'utf8'))!;
    const d = diffMatrices(old, m);
    const md = reportMarkdown([old, m], [d], sheet);
    expect(md).toContain('| **TCP** | ✅ works | ✅ works | ✅ works | ✅ works | ⛔ EACCES | ⛔ EACCES |');
    expect(md).toContain('`6.12.117+deb12-amd64` vs. the talk\'s cheat sheet');
    expect(md).toContain('No cell differs from the cheat sheet.');
    expect(md).toContain('### `6.1.0-56-amd64` → `6.12.117+deb12-amd64`');
    const j = JSON.parse(JSON.stringify(reportJson([old, m], [d], sheet)));
    expect(j.kernels.map((k: { kernel: string }) => k.kernel)).toEqual(['6.1.0-56-amd64', '6.12.117+deb12-amd64']);
    expect(j.kernels[1].comparison.summary).toEqual({ agree: 144, differ: 0, unmeasured: 0, silentLosses: 12 });
    expect(j.kernels[0].comparison.summary.differ).toBe(28); // 6.1 has no VSOCK in maps: ingress to egress to and from VSOCK
    expect(j.kernels[1].redirect).toHaveLength(288);
    expect(j.diffs[0].changed).toBe(164);
  });
});

describe('Debian 6.12, as measured (data/measured) against the hand-written expectation (data/expected/6.12.json)', () => {
  const m = parseProbeOutput(fs.readFileSync(data('measured/6.12.117+deb12-amd64.jsonl'), 'utf8'))!;
  const e = loadExpectation(data('expected/6.12.json'));

  it('matches cell for cell, SOCKMAP and SOCKHASH', () => {
    expect(m.redirect).toHaveLength(288);
    expect(m.insert).toHaveLength(26);
    expect(checkExpectation(m, e)).toEqual([]);
  });

  it('covers every row of the cheat sheet', () => {
    for (const row of sheet.rows) expect(Object.keys(e.redirect[row.mode] ?? {})).toEqual([...REDIRECT_KINDS]);
  });

  it('reports a changed cell', () => {
    const changed = { ...m, redirect: m.redirect.map((x) => (x.map === 'sockhash' && x.mode === 'ingress-to-local' && x.src === 'udp' && x.dst === 'vsock-stream' ? { ...x, outcome: 'works' as const } : x)) };
    expect(checkExpectation(changed, e)).toEqual(['sockhash ingress-to-local udp→vsock-stream: expected lost, got works']);
    expect(cellWord(findRedirect(m, 'sockmap', 'send-to-egress', 'tcp', 'udp'))).toBe('send:EACCES');
  });
});
