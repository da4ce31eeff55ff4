// Lab text (markdown) for a terminal, rendered from marked's lexer: headings,
// paragraphs wrapped to the terminal, lists, code blocks, quotes and tables.
import { marked, type Token, type Tokens } from 'marked';
import { highlight } from './highlight.ts';
import { paint, type Paint } from './style.ts';

function inline(tokens: Token[] | undefined, p: Paint): string {
  if (!tokens) return '';
  return tokens
    .map((t) => {
      switch (t.type) {
        case 'strong':
          return p.bold(inline((t as Tokens.Strong).tokens, p));
        case 'em':
          return p.italic(inline((t as Tokens.Em).tokens, p));
        case 'codespan':
          // Code spans are literal: no entity decoding inside (CommonMark).
          return p.cyan((t as Tokens.Codespan).text);
        case 'link': {
          const l = t as Tokens.Link;
          const text = inline(l.tokens, p);
          return l.href === l.text ? p.underline(l.href) : `${text} (${p.underline(l.href)})`;
        }
        case 'br':
          return '\n';
        case 'escape':
        case 'text': {
          const tt = t as Tokens.Text;
          // A single line break in the source is a space: the paragraph is reflowed as a whole.
          return tt.tokens ? inline(tt.tokens, p) : decode(tt.text).replace(/\n/g, ' ');
        }
        default:
          return decode((t as { raw: string }).raw);
      }
    })
    .join('');
}

const ENTITIES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" };

/** Decodes the entities marked may leave in text, each exactly once. */
function decode(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|#39);/g, (m) => ENTITIES[m]);
}

// eslint-disable-next-line no-control-regex
const visibleLength = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').length;

/** Wraps text to `width` columns, keeping escape sequences out of the count. */
export function wrap(text: string, width: number, indent = ''): string {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(/ +/)) {
      if (line && visibleLength(line) + 1 + visibleLength(word) > width - indent.length) {
        out.push(indent + line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    out.push(indent + line);
  }
  return out.join('\n');
}

function block(t: Token, p: Paint, width: number, indent: string): string {
  switch (t.type) {
    case 'heading': {
      const h = t as Tokens.Heading;
      const text = inline(h.tokens, p);
      return h.depth === 1 ? p.bold(p.underline(text)) : p.bold(text);
    }
    case 'paragraph':
      return wrap(inline((t as Tokens.Paragraph).tokens, p), width, indent);
    case 'code': {
      const c = t as Tokens.Code;
      return highlight(c.text, c.lang, p)
        .map((l) => `${indent}  ${l}`)
        .join('\n');
    }
    case 'list': {
      const l = t as Tokens.List;
      return l.items
        .map((item, i) => {
          const bullet = l.ordered ? `${Number(l.start || 1) + i}.` : '•';
          const body = item.tokens
            .map((x) => (x.type === 'text' ? wrap(inline((x as Tokens.Text).tokens ?? [x], p), width - 2 - indent.length) : block(x, p, width - 2, '')))
            .join('\n');
          return body
            .split('\n')
            .map((line, j) => (j === 0 ? `${indent}${bullet} ${line}` : `${indent}${' '.repeat(bullet.length + 1)}${line}`))
            .join('\n');
        })
        .join('\n');
    }
    case 'blockquote':
      return (t as Tokens.Blockquote).tokens
        .map((x) => block(x, p, width - 2, ''))
        .join('\n')
        .split('\n')
        .map((l) => `${indent}${p.dim('│')} ${l}`)
        .join('\n');
    case 'table': {
      const tb = t as Tokens.Table;
      const rows = [tb.header.map((c) => inline(c.tokens, p)), ...tb.rows.map((r) => r.map((c) => inline(c.tokens, p)))];
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => visibleLength(r[i] ?? ''))));
      const fmt = (r: string[]) => indent + r.map((c, i) => c + ' '.repeat(widths[i] - visibleLength(c))).join('  ');
      return [p.bold(fmt(rows[0])), indent + widths.map((w) => '─'.repeat(w)).join('  '), ...rows.slice(1).map(fmt)].join('\n');
    }
    case 'hr':
      return indent + p.dim('─'.repeat(Math.min(width, 60)));
    case 'space':
      return '';
    default:
      return wrap(decode((t as { raw: string }).raw.trim()), width, indent);
  }
}

export function renderMarkdown(md: string, opts: { width?: number; color?: boolean; indent?: string } = {}): string {
  const p = paint(opts.color ?? false);
  const width = Math.min(opts.width ?? 80, 100);
  return marked
    .lexer(md)
    .map((t) => block(t, p, width, opts.indent ?? ''))
    .filter((s) => s !== '')
    .join('\n\n');
}
