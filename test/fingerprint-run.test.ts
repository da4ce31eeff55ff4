// `npm run lab` builds each machine's fingerprint once and every report gets
// that one: the session is replaced by two fake machines (test/fake-backend.ts),
// one that booted an arm64 guest image and one on the host's root with no arch
// given, and the terminal, JUnit, JSON lines, HTML and markdown outputs of one
// run are read back.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { hostArch } from '../core/arch.ts';
import { buildConfig } from '../core/config.ts';
import { runnerVersion } from '../runner/fingerprint.ts';
import { runLabs } from '../runner/run-labs.ts';
import { FakeBackend } from './fake-backend.ts';

const DIGEST = 'ab'.repeat(32);

// Two machines, as vm/session.ts would start them; `arch` and `imageDigest` are what BackendInfo carries when it knows them.
vi.mock('../vm/session.ts', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../vm/session.ts')>()),
  onEachMachine: async (_cfg: unknown, _ui: unknown, each: (m: object) => Promise<'stop' | void>) => {
    const signal = new AbortController().signal;
    await each({ backend: new FakeBackend(), info: { backend: 'qemu', kernelRelease: '6.12.117+deb12-arm64', accel: 'tcg', arch: 'arm64', imageDigest: DIGEST }, signal });
    await each({ backend: new FakeBackend(), info: { backend: 'qemu', kernelRelease: '6.1.0-27-amd64', accel: 'kvm' }, signal });
    return undefined;
  },
}));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-fingerprint-run-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('a lab run', () => {
  it('records each machine\'s fingerprint in every report', async () => {
    const labsDir = path.join(tmp, 'labs');
    fs.mkdirSync(path.join(labsDir, '01-hello'), { recursive: true });
    fs.writeFileSync(path.join(labsDir, '01-hello/lab.yaml'), 'title: Hello\nsteps:\n  - title: Say hello\n    run: echo hello\n');
    const cfg = buildConfig({}, { LABS_DIR: labsDir, LAB_STATE_HOME: path.join(tmp, 'state'), LAB_CACHE_DIR: path.join(tmp, 'cache') });
    const f = (name: string) => path.join(tmp, name);
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));

    const code = await runLabs(cfg, { labs: ['1'], reporters: [`junit=${f('r.xml')}`, `json=${f('r.jsonl')}`, `html=${f('r.html')}`, `markdown=${f('r.md')}`], out, quiet: true });
    expect(code).toBe(0);

    const runner = runnerVersion();
    const image = { runner, backend: 'qemu', arch: 'arm64', kernelRelease: '6.12.117+deb12-arm64', accel: 'tcg', imageDigest: DIGEST };
    const host = { runner, backend: 'qemu', arch: hostArch(), kernelRelease: '6.1.0-27-amd64', accel: 'kvm' };

    expect(text).toContain(`fingerprint: runner ${runner} · qemu · arm64 · kernel 6.12.117+deb12-arm64 · tcg · image ${DIGEST.slice(0, 12)}…\n`);
    expect(text).toContain(`fingerprint: runner ${runner} · qemu · ${hostArch()} · kernel 6.1.0-27-amd64 · kvm · image none (host root)\n`);

    const labs = fs.readFileSync(f('r.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((o) => o.type === 'lab');
    expect(labs.map((o) => o.fingerprint)).toEqual([image, host]);

    const xml = fs.readFileSync(f('r.xml'), 'utf8');
    expect(xml).toContain(`<property name="sockmap-labs.image" value="${DIGEST}"/>`);
    expect(xml).toContain(`<property name="sockmap-labs.arch" value="${hostArch()}"/>`);
    expect(xml).toContain('<property name="sockmap-labs.image" value="none (host root)"/>');
    expect(xml.match(/<property name="sockmap-labs\.runner" value="([^"]*)"\/>/)?.[1]).toBe(runner.replace(/&/g, '&amp;'));

    const html = fs.readFileSync(f('r.html'), 'utf8');
    expect(html).toContain(`<td>arm64</td><td><code>6.12.117+deb12-arm64</code></td><td>tcg</td><td><code class="digest">${DIGEST}</code></td>`);
    expect(fs.readFileSync(f('r.md'), 'utf8')).toContain(`fingerprint: \`runner ${runner} · qemu · arm64`);
  });
});
