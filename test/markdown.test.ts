import { describe, expect, it } from 'vitest';
import { renderMarkdown, wrap } from '../runner/markdown.ts';

const render = (md: string, o: { width?: number; indent?: string } = {}) => renderMarkdown(md, { color: false, ...o });

describe('renderMarkdown without colour', () => {
  it('renders headings as their text', () => {
    expect(render('# SOCKMAP, part one')).toBe('SOCKMAP, part one');
    expect(render('## A *sub* heading')).toBe('A sub heading');
  });

  it('has no escape sequences', () => {
    const out = render('# T\n\n**bold** *it* `code` [link](https://x.org)\n\n> quote\n\n---\n\n| a |\n|---|\n| b |');
    expect(out).not.toContain('\x1b[');
  });

  it('separates blocks with one blank line', () => {
    expect(render('# Title\n\nFirst paragraph.\n\n\n\nSecond paragraph.')).toBe('Title\n\nFirst paragraph.\n\nSecond paragraph.');
  });

  it('wraps a paragraph to the width, keeping every word in order', () => {
    const words = Array.from({ length: 60 }, (_, i) => `word${i}`);
    const out = render(words.join(' '), { width: 40 });
    const lines = out.split('\n');
    expect(lines.length).toBeGreaterThan(5);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(40);
    expect(out.split(/\s+/)).toEqual(words);
    // Greedy: no line could have taken the next word.
    for (let i = 0; i < lines.length - 1; i++) expect(lines[i].length + 1 + lines[i + 1].split(' ')[0].length).toBeGreaterThan(40);
  });

  it('wraps with an indent inside the width', () => {
    const out = render('aaa bbb ccc ddd eee fff ggg hhh', { width: 12, indent: '  ' });
    for (const l of out.split('\n')) {
      expect(l.startsWith('  ')).toBe(true);
      expect(l.length).toBeLessThanOrEqual(12);
    }
  });

  it('caps the width at 100 columns', () => {
    const out = render(Array.from({ length: 100 }, () => 'abcd').join(' '), { width: 300 });
    for (const l of out.split('\n')) expect(l.length).toBeLessThanOrEqual(100);
  });

  it('renders emphasis and strong as plain text', () => {
    expect(render('A **SOCKMAP** holds *sockets*.')).toBe('A SOCKMAP holds sockets.');
  });

  it('renders a link with its address', () => {
    expect(render('see [the docs](https://docs.kernel.org/bpf/)')).toBe('see the docs (https://docs.kernel.org/bpf/)');
    expect(render('<https://ebpf.io>')).toBe('https://ebpf.io');
  });

  it('renders a bullet list', () => {
    expect(render('- one\n- two\n- three')).toBe('• one\n• two\n• three');
  });

  it('renders a numbered list, from its start number', () => {
    expect(render('1. first\n2. second')).toBe('1. first\n2. second');
    expect(render('3. third\n4. fourth')).toBe('3. third\n4. fourth');
  });

  it('indents the wrapped lines of a list item under its text', () => {
    const out = render('- ' + Array.from({ length: 20 }, (_, i) => `w${i}`).join(' '), { width: 24 });
    const [first, ...rest] = out.split('\n');
    expect(first.startsWith('• w0 ')).toBe(true);
    expect(rest.length).toBeGreaterThan(0);
    for (const l of rest) expect(l).toMatch(/^ {2}\S/);
    for (const l of out.split('\n')) expect(l.length).toBeLessThanOrEqual(24);
  });

  it('renders a nested list', () => {
    expect(render('- outer\n  - inner')).toBe('• outer\n  • inner');
  });

  it('indents a code block by two spaces and keeps its own indentation', () => {
    const md = 'Run:\n\n```sh\nbpftool map show\n  if x; then\n    y\n```';
    expect(render(md)).toBe('Run:\n\n  bpftool map show\n    if x; then\n      y');
  });

  it('does not wrap or decode a code block', () => {
    const long = 'x'.repeat(120) + ' && y < z';
    expect(render('```\n' + long + '\n```', { width: 40 })).toBe('  ' + long);
  });

  it('aligns table columns', () => {
    const md = [
      '| map type  | key                         | looks like  |',
      '|-----------|-----------------------------|-------------|',
      '| `sockmap` | always 4 bytes (an index)   | an array    |',
      '| `sockhash`| any size, e.g. a 4-tuple    | a hash table|',
    ].join('\n');
    const lines = render(md).split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0].trimEnd()).toBe('map type  key                        looks like');
    expect(lines[1]).toMatch(/^─+ {2}─+ {2}─+$/);
    expect(lines[2].trimEnd()).toBe('sockmap   always 4 bytes (an index)  an array');
    expect(lines[3].trimEnd()).toBe('sockhash  any size, e.g. a 4-tuple   a hash table');
    // Every column starts at the same place on every line.
    for (const col of [lines[0].indexOf('key'), lines[0].indexOf('looks like')]) {
      for (const l of [lines[2], lines[3]]) expect(l[col - 1]).toBe(' ');
      for (const l of [lines[2], lines[3]]) expect(l[col]).not.toBe(' ');
      expect(lines[1][col - 1]).toBe(' ');
      expect(lines[1][col]).toBe('─');
    }
  });

  it('shows inline code without backticks', () => {
    const out = render('Pin it with `bpftool map pin` under `$PIN`.');
    expect(out).toBe('Pin it with bpftool map pin under $PIN.');
    expect(out).not.toContain('`');
  });

  it('decodes HTML entities in text', () => {
    expect(render('a &amp; b &lt; c &gt; d &quot;e&quot; &#39;f&#39;')).toBe(`a & b < c > d "e" 'f'`);
  });

  it('keeps literal &, < and " as they are', () => {
    expect(render('a && b < c "d"')).toBe('a && b < c "d"');
    expect(render('`a && b < c "d"`')).toBe('a && b < c "d"');
  });

  it('decodes entities in list items and table cells', () => {
    expect(render('- a &amp; b')).toBe('• a & b');
    expect(render('| x &lt; y |\n|---|\n| &quot;z&quot; |').split('\n').map((l) => l.trimEnd())).toEqual(['x < y', '─────', '"z"']);
  });

  it('renders a quote with a bar', () => {
    expect(render('> careful &amp; slow')).toBe('│ careful & slow');
  });

  it('indents every block with opts.indent', () => {
    const out = render('Para.\n\n- item\n\n```\ncode\n```', { indent: '    ' });
    for (const l of out.split('\n').filter(Boolean)) expect(l.startsWith('    ')).toBe(true);
  });

  it('renders the empty string as empty', () => {
    expect(render('')).toBe('');
  });
});

describe('renderMarkdown bugs', () => {
  // BUG (runner/markdown.ts, decode): entities are decoded one after the
  // other, &amp; first, so "&amp;lt;" (the text "&lt;") becomes "<".
  it('decodes each entity once', () => {
    expect(render('write &amp;lt; for <')).toBe('write &lt; for <');
  });

  // BUG (runner/markdown.ts, inline, case 'codespan'): marked 18 gives code
  // span text raw, and CommonMark does not decode entities in code spans,
  // but the renderer decodes them: `&lt;` shows as "<" instead of "&lt;".
  it('leaves entities in inline code alone', () => {
    expect(render('the entity `&lt;`')).toBe('the entity &lt;');
  });

  // BUG (runner/markdown.ts, wrap, used by the 'paragraph' case): a
  // paragraph's soft line breaks (the newlines of a hard-wrapped source, as in
  // every lab.yaml `text: |`) are kept as line breaks and each source line is
  // wrapped on its own. In a terminal narrower than the source this gives
  // ragged lines ("… The map\nholds a weak\nreference …"); CommonMark renders a
  // soft break as a space, so the paragraph should be reflowed as a whole.
  it('reflows a paragraph written over several source lines', () => {
    const md = 'A SOCKMAP is a BPF map whose values are sockets. The map holds a weak\nreference to each socket: when the socket goes away, its entry goes too.';
    const out = render(md, { width: 60 });
    expect(out).toBe(
      'A SOCKMAP is a BPF map whose values are sockets. The map\nholds a weak reference to each socket: when the socket goes\naway, its entry goes too.',
    );
  });
});

describe('wrap', () => {
  it('keeps explicit line breaks and wraps each line', () => {
    expect(wrap('aa bb cc\ndd', 5)).toBe('aa bb\ncc\ndd');
  });

  it('does not count escape sequences', () => {
    const red = (s: string) => `\x1b[31m${s}\x1b[39m`;
    expect(wrap(`${red('aaaa')} ${red('bbbb')}`, 9)).toBe(`${red('aaaa')} ${red('bbbb')}`);
  });

  it('puts a word longer than the width on its own line', () => {
    expect(wrap('a ' + 'x'.repeat(20) + ' b', 10)).toBe('a\n' + 'x'.repeat(20) + '\nb');
  });
});
