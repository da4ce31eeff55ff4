// Failure explainers (runner/explain.ts): which lines of a failed step's output
// get a SOCKMAP explanation, and which do not. The outputs are the shapes the
// labs' tools print (socklab, bpftool, strace), as seen in real failures.
import { describe, expect, it } from 'vitest';
import { explainFailure } from '../runner/explain.ts';

const ops = (out: string, expected?: string) => explainFailure(out, expected).map((e) => `${e.operation} ${e.errno}`);

describe('explainFailure', () => {
  it('explains an insert the map refused, from socklab (errno name) and strace', () => {
    expect(ops('insert a0 0: EOPNOTSUPP (Operation not supported)')).toEqual(['insert EOPNOTSUPP']);
    expect(ops('bpf(BPF_MAP_UPDATE_ELEM, {map_fd=3, key=0x7ffc, value=0x7ffc, flags=BPF_ANY}, 32) = -1 EOPNOTSUPP (Operation not supported)')).toEqual(['insert EOPNOTSUPP']);
    const [e] = explainFailure('insert a0 0: EOPNOTSUPP (Operation not supported)');
    expect(e.text).toMatch(/TCP goes in only when established or listening/);
    expect(e.source).toContain('sock_map_sk_state_allowed()');
  });

  it("explains bpftool's failures, which print only the message", () => {
    expect(ops('Error: map create failed: Invalid argument')).toEqual(['create EINVAL']);
    expect(ops('Error: failed prog attach to map: Device or resource busy')).toEqual(['attach EBUSY']);
    expect(ops('Error: failed prog detach from map: No such file or directory')).toEqual(['detach ENOENT']);
  });

  it("explains a write into a socket the SK_MSG program dropped, as bash reports it", () => {
    expect(ops('bash: line 3: echo: write error: Permission denied')).toEqual(['send EACCES']);
  });

  it('explains an SK_MSG drop on send, and says it is sticky', () => {
    const [e] = explainFailure('send a0 second: EACCES (Permission denied)');
    expect(`${e.operation} ${e.errno}`).toBe('send EACCES');
    expect(e.text).toMatch(/sticky/);
    expect(e.source).toContain('tcp_bpf_send_verdict()');
  });

  it("leaves alone what the lab wanted: socklab's expected failures (\"! …\") and the errno the step expects", () => {
    expect(ops('! insert a0 0: EOPNOTSUPP (Operation not supported)')).toEqual([]);
    expect(ops('Error: map create failed: Invalid argument', 'EINVAL')).toEqual([]);
  });

  it('says nothing for an errno of no SOCKMAP operation, and each (operation, errno) once', () => {
    expect(ops('cat: /nope: No such file or directory')).toEqual([]);
    expect(ops('connect: ECONNREFUSED (Connection refused)')).toEqual([]);
    expect(ops('insert a0 0: EOPNOTSUPP (x)\ninsert a1 1: EOPNOTSUPP (x)\nsend a0 hi: EACCES (Permission denied)')).toEqual(['insert EOPNOTSUPP', 'send EACCES']);
  });
});

describe('every report shows the explanation', () => {
  it('JUnit (message and body), HTML, and the terminal', async () => {
    const { PassThrough } = await import('node:stream');
    const path = await import('node:path');
    const { projectRoot } = await import('../core/paths.ts');
    const { failureText } = await import('../runner/reporters/junit.ts');
    const { renderHtmlReport } = await import('../runner/html-page.ts');
    const { TerminalReporter } = await import('../runner/reporters/terminal.ts');
    const output = 'send a0 second: EACCES (Permission denied)\n';
    const step = {
      title: 'Send again',
      status: 'failed' as const,
      command: 'socklab $PIN/map send a0 second',
      checks: [{ name: 'stdout', ok: false, expected: 'contains "5 bytes"', got: output }],
      exec: { code: 1, stdout: output, stderr: '', timedOut: false, durationMs: 50 },
      durationMs: 50,
      explanations: explainFailure(output),
    };
    const f = failureText(step);
    expect(f.message).toMatch(/send → EACCES: an SK_MSG program dropped this send.*\[net\/ipv4\/tcp_bpf\.c: tcp_bpf_send_verdict\(\)/);
    expect(f.body).toContain('in SOCKMAP terms: send → EACCES');
    const lab = { id: '05-x', number: 5, slug: 'x', dir: path.join(projectRoot, 'labs/05-x'), file: path.join(projectRoot, 'labs/05-x/lab.yaml'), spec: { title: 'X', steps: [{ title: 'Send again', run: 'true' }] }, stepLines: [1] };
    const html = renderHtmlReport({ results: [{ lab, status: 'failed', steps: [step], durationMs: 50 }] });
    expect(html).toMatch(/<div class="explain"><b>in SOCKMAP terms<\/b><p><b>send → EACCES<\/b>: an SK_MSG program dropped this send/);
    const out = new PassThrough();
    let text = '';
    out.on('data', (d) => (text += d));
    const t = new TerminalReporter({ out: out as unknown as NodeJS.WritableStream, color: false, quiet: true } as never);
    t.stepEnd(lab as never, lab.spec.steps[0] as never, step);
    expect(text).toMatch(/in SOCKMAP terms:\n\s+send → EACCES \(send a0 second: EACCES \(Permission denied\)\)\n\s+an SK_MSG program dropped this send/);
    expect(text).toContain('decided by net/ipv4/tcp_bpf.c: tcp_bpf_send_verdict()');
  });
});
