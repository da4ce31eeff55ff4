// Building bash command lines: quoting, and exporting a step's environment.

/** Single-quotes a string for bash. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A word as is when bash would read it unchanged, else single-quoted. */
export function shqIfNeeded(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : shq(s);
}

/** `export K='v';` for each variable, on one line. */
export function exportsFor(env: Record<string, string> = {}): string {
  return Object.entries(env)
    .map(([k, v]) => `export ${k}=${shq(v)};`)
    .join(' ');
}
