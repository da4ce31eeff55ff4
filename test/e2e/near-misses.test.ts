// An exercise's checks must reject a program that is almost right, and say
// which case it got wrong. labs/NN-*/near-misses/ holds such programs, one
// mistake each; here each one replaces the learner's file in a copy of its
// lab, and the lab must fail at the step whose hint names the mistake. All the
// copies run in one VM (`lab all`): one boot for the whole set.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverLabs, loadLab, type LoadedLab as Lab } from '../../runner/labs.ts';
import { cli, root, tail } from './cli-helpers.ts';

/** Near miss (its file name without .bpf.c) → the title of the step it must fail at. */
const EXPECTED: Record<string, Record<string, string>> = {
  '05-egress-policy': {
    'mask-host-order': 'A send to 192.0.2.1 is refused',
    'net-host-order': 'A send to 192.0.2.1 is refused',
    'no-mask': 'A send to 192.0.2.1 is refused',
    'only-192.0.2.1': 'The first address, 192.0.2.0, is refused',
    'range-excludes-first': 'The first address, 192.0.2.0, is refused',
    'mask-25': 'The last address, 192.0.2.255, is refused',
    'range-excludes-last': 'The last address, 192.0.2.255, is refused',
    'prefix-16': 'Just below the range, 192.0.1.255 gets through',
    'mask-23': 'Just above the range, 192.0.3.0 gets through',
    'third-octet-only': '192.168.2.1 gets through',
    'ipv4-only': 'An IPv6 socket to ::ffff:192.0.2.1 is refused',
    'ipv6-dropped': 'An IPv6 socket to ::1 gets through',
    'ipv6-last-word-only': 'An IPv6 address that ends in 192.0.2.1 gets through',
  },
  '06-ingress-policy': {
    'offset-1': 'Data starting with DROP never arrives',
    'exactly-drop': 'Data starting with DROP never arrives',
    lowercase: 'Data starting with DROP never arrives',
    'needs-space': 'Exactly DROP, with nothing after it, never arrives',
    'short-dropped': 'A message shorter than 4 bytes arrives',
    'three-bytes': 'A word that only begins like DROP arrives',
    anywhere: 'DROP further into a message arrives',
    'case-insensitive': 'Case matters - drop in small letters arrives',
  },
  '12-stream-parser': {
    'host-order': 'One message sent whole arrives whole',
    'header-not-counted': 'One message sent whole arrives whole',
    'off-by-one': 'One message sent whole arrives whole',
    'whole-skb': 'A message split across two sends arrives only when whole',
    'negative-when-short': 'A split inside the header - the parser waits',
    'one-length-byte': 'A message longer than 255 bytes',
    'waits-for-payload': 'An empty message is just its header',
  },
  '14-l7-splice': {
    'ingress-flag': 'The proxy read nothing',
    'ntohs-remote-port': 'The backend got the request',
    'raw-remote-port': 'The backend got the request',
    'swapped-addresses': 'The backend got the request',
    'own-key': 'The backend got the request',
    'proxy-port-as-key': 'The backend got the request',
    'direction-htons': 'The backend got the request',
    'reply-ports-swapped': "The client got the backend's reply",
    'local-port-ntohs': "The client got the backend's reply",
  },
};

// Inside the checkout, so the guest sees it through the project share.
const dir = path.join(root, 'build/test-near-misses');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const labs = new Map(discoverLabs(path.join(root, 'labs')).map((ref) => [ref.id, loadLab(ref)]));

/** A hint as the terminal shows it, give or take markdown and line breaks. */
const flat = (s: string) => s.replace(/[`*]/g, '').replace(/\s+/g, ' ').trim();

interface Copy {
  number: number;
  lab: Lab;
  nearMiss: string;
  step: string;
}

describe('near misses of the exercises fail', () => {
  it('every near-miss file has an expected step, and every expected step a hint', () => {
    for (const [id, cases] of Object.entries(EXPECTED)) {
      const lab = labs.get(id)!;
      expect(lab, id).toBeDefined();
      const files = fs.readdirSync(path.join(lab.dir, 'near-misses')).filter((f) => f.endsWith('.bpf.c'));
      expect(files.map((f) => f.replace(/\.bpf\.c$/, '')).sort(), `${id}/near-misses`).toEqual(Object.keys(cases).sort());
      for (const f of files) expect(fs.readFileSync(path.join(lab.dir, 'near-misses', f), 'utf8'), f).toMatch(/^\/\/ Near miss: .+$/m);
      for (const title of new Set(Object.values(cases))) {
        const step = lab.spec.steps.find((s) => s.title === title);
        expect(step, `${id}: no step "${title}"`).toBeDefined();
        expect(step!.hint, `${id}: step "${title}" has no hint`).toBeTruthy();
      }
    }
  });

  it(
    'each near miss fails its lab at the step whose hint names its mistake',
    async () => {
      fs.rmSync(dir, { recursive: true, force: true });
      const copies: Copy[] = [];
      let number = 50;
      for (const [id, cases] of Object.entries(EXPECTED)) {
        const lab = labs.get(id)!;
        const [file] = lab.spec.exercise!.files;
        for (const [nearMiss, step] of Object.entries(cases)) {
          const copy = path.join(dir, `${number}-${id.slice(3)}-${nearMiss.replace(/[^a-z0-9]+/g, '-')}`);
          fs.cpSync(lab.dir, copy, { recursive: true });
          fs.copyFileSync(path.join(lab.dir, 'near-misses', `${nearMiss}.bpf.c`), path.join(copy, 'exercise', file));
          copies.push({ number: number++, lab, nearMiss, step });
        }
      }

      const t0 = Date.now();
      const { code, out } = await cli(['lab', 'all', '--quiet', '--no-warm'], { LABS_DIR: dir, LAB_RUN_TAG: `nearmiss${process.pid}` }).done;
      const seconds = (Date.now() - t0) / 1000;
      console.log(`near misses: ${copies.length} lab runs in one VM, ${seconds.toFixed(0)} s`);
      expect(code, tail(out)).toBe(1);
      expect(out, tail(out)).toContain(`labs: 0 passed, ${copies.length} failed`);

      // One section of the output per lab run: "━━ Lab 57 · Egress policy… ━━".
      const sections = new Map<number, string>();
      const heads = [...out.matchAll(/^━━ Lab (\d+) · /gm)];
      heads.forEach((h, i) => sections.set(Number(h[1]), out.slice(h.index, heads[i + 1]?.index ?? out.length)));

      const seen: string[] = [];
      for (const c of copies) {
        const what = `${c.lab.id} near miss ${c.nearMiss}`;
        const text = sections.get(c.number);
        expect.soft(text, `${what}: no output`).toBeDefined();
        if (!text) continue;
        const steps = c.lab.spec.steps;
        const n = steps.findIndex((s) => s.title === c.step) + 1;
        const fails = [...text.matchAll(/^ *✖ FAIL step (\d+\/\d+: .*?) [\d.]+ s$/gm)].map((m) => m[1]);
        seen.push(`${c.lab.id} ${c.nearMiss}: ${fails.map((f) => `✖ FAIL step ${f}`).join(', ') || 'did not fail'}`);
        expect.soft(fails, `${what}: should fail at step ${n}`).toEqual([`${n}/${steps.length}: ${c.step}`]);
        const hint = /^ {4}hint:\n((?: {6}.*\n?)+)/m.exec(text.slice(text.indexOf('✖ FAIL step')));
        expect.soft(flat(hint?.[1] ?? 'no hint shown'), `${what}: the hint of step ${n}`).toBe(flat(steps[n - 1].hint!));
      }
      console.log(seen.join('\n'));
    },
    900_000,
  );
});
