// Just enough syntax colouring for the code in lab texts: C (BPF programs) and
// shell (the commands). Comments dim, strings green, keywords bold, numbers
// and BPF constants yellow. Unknown languages stay plain.
import type { Paint } from './style.ts';

const C_KEYWORDS = new Set(
  'if else for while do return switch case default break continue struct union enum typedef static const volatile inline sizeof void char short int long unsigned signed bool'.split(' '),
);
const SH_KEYWORDS = new Set('if then else elif fi for while do done case esac in function return export local sudo exec'.split(' '));

type Lang = 'c' | 'sh';

export function languageOf(tag: string | undefined): Lang | undefined {
  const t = (tag ?? '').toLowerCase();
  if (['c', 'h', 'bpf'].includes(t)) return 'c';
  if (['sh', 'bash', 'shell', 'console', 'zsh'].includes(t)) return 'sh';
  return undefined;
}

/** Colours one line of code. Multi-line comments are not tracked across lines (lab code rarely needs it). */
export function highlightLine(line: string, lang: Lang, p: Paint): string {
  const token =
    lang === 'c'
      ? /(\/\/.*$|\/\*.*?\*\/|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])'|#\s*\w+|\b0x[0-9a-fA-F]+\b|\b\d+\b|\b[A-Za-z_]\w*\b)/g
      : /((?:^|\s)#.*$|"(?:\\.|[^"\\])*"|'[^']*'|\$\{?\w+\}?|\b\d+\b|\b[A-Za-z_][\w-]*\b)/g;
  return line.replace(token, (t) => {
    if (/^\s*(\/\/|\/\*)/.test(t) || (lang === 'sh' && /^\s*#/.test(t))) return p.dim(t);
    if (/^["']/.test(t)) return p.green(t);
    if (lang === 'c' && /^#/.test(t)) return p.cyan(t);
    if (/^\$/.test(t)) return p.cyan(t);
    if (/^(0x)?\d/.test(t)) return p.yellow(t);
    const kw = lang === 'c' ? C_KEYWORDS : SH_KEYWORDS;
    if (kw.has(t)) return p.bold(t);
    // BPF's vocabulary: SK_PASS, BPF_F_INGRESS, SEC, bpf_* helpers.
    if (lang === 'c' && (/^[A-Z][A-Z0-9_]{2,}$/.test(t) || /^bpf_\w+$/.test(t))) return p.yellow(t);
    return t;
  });
}

export function highlight(code: string, tag: string | undefined, p: Paint): string[] {
  const lang = languageOf(tag);
  return code.split('\n').map((l) => (lang ? highlightLine(l, lang, p) : p.cyan(l)));
}
