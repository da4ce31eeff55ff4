import { describe, expect, it } from 'vitest';
import { highlight, highlightLine, languageOf } from '../runner/highlight.ts';
import { renderMarkdown } from '../runner/markdown.ts';
import { paint } from '../runner/style.ts';

// Marks colours as <name>…</name> so the tests can read them.
const tag = (() => {
  const p = paint(false);
  for (const k of Object.keys(p) as (keyof typeof p)[]) p[k] = (s: string) => `<${k}>${s}</${k}>`;
  return p;
})();

describe('highlight', () => {
  it('knows C and shell by their fence tags', () => {
    expect(languageOf('c')).toBe('c');
    expect(languageOf('bash')).toBe('sh');
    expect(languageOf('console')).toBe('sh');
    expect(languageOf('yaml')).toBeUndefined();
  });

  it('colours C: comments, strings, keywords, numbers, BPF constants and helpers', () => {
    expect(highlightLine('return SK_DROP; // drop it', 'c', tag)).toBe('<bold>return</bold> <yellow>SK_DROP</yellow>; <dim>// drop it</dim>');
    expect(highlightLine('char _license[] SEC("license") = "GPL";', 'c', tag)).toBe(
      '<bold>char</bold> _license[] <yellow>SEC</yellow>(<green>"license"</green>) = <green>"GPL"</green>;',
    );
    expect(highlightLine('bpf_msg_redirect_map(msg, &m, 1, BPF_F_INGRESS)', 'c', tag)).toBe(
      '<yellow>bpf_msg_redirect_map</yellow>(msg, &m, <yellow>1</yellow>, <yellow>BPF_F_INGRESS</yellow>)',
    );
    expect(highlightLine('#include <linux/bpf.h>', 'c', tag)).toBe('<cyan>#include</cyan> <linux/bpf.h>');
  });

  it('colours shell: variables, strings, comments; leaves flags alone', () => {
    expect(highlightLine('bpftool map create $PIN/sockmap key 4 # a map', 'sh', tag)).toBe(
      'bpftool map create <cyan>$PIN</cyan>/sockmap key <yellow>4</yellow><dim> # a map</dim>',
    );
    expect(highlightLine("echo 'a b' \"$X\"", 'sh', tag)).toBe(`echo <green>'a b'</green> <green>"$X"</green>`);
  });

  it('leaves unknown languages plain (one colour), and no colour at all without a terminal', () => {
    expect(highlight('a: 1', 'yaml', tag)).toEqual(['<cyan>a: 1</cyan>']);
    expect(highlight('return 0;', 'c', paint(false))).toEqual(['return 0;']);
  });

  it('is used for fenced code in lab texts', () => {
    expect(renderMarkdown('```c\nreturn SK_PASS;\n```', { color: false })).toBe('  return SK_PASS;');
    expect(renderMarkdown('```c\nreturn SK_PASS;\n```', { color: true })).toContain('\x1b[1mreturn\x1b[22m');
  });
});
