// The support matrix as data: what bpf/helpers/sockmap-matrix prints (one
// JSON line per probe), read back and checked, and the words for each cell.
import { z } from 'zod';
import type { RunFingerprint } from '../fingerprint.ts';

export const MAPS = ['sockmap', 'sockhash'] as const;
export const MODES = ['send-to-local', 'send-to-egress', 'ingress-to-egress', 'ingress-to-local'] as const;
/** The socket kinds of the redirect probes, in the order of the rows and columns. */
export const REDIRECT_KINDS = ['tcp', 'udp', 'unix-stream', 'unix-dgram', 'vsock-stream', 'vsock-seqpacket'] as const;
/** The socket kinds of the insert probes. */
export const INSERT_KINDS = [
  ...REDIRECT_KINDS,
  'unix-seqpacket',
  'vsock-dgram',
  'tcp-listen',
  'tcp-unconnected',
  'udp-unbound',
  'udp-bound',
  'unix-stream-unconnected',
] as const;

export type MapType = (typeof MAPS)[number];
export type Mode = (typeof MODES)[number];
export type RedirectKind = (typeof REDIRECT_KINDS)[number];
export type InsertKind = (typeof INSERT_KINDS)[number];

export const MAP_LABELS: Record<MapType, string> = { sockmap: 'SOCKMAP', sockhash: 'SOCKHASH' };

export const MODE_LABELS: Record<Mode, string> = {
  'send-to-local': 'send to local',
  'send-to-egress': 'send to egress',
  'ingress-to-egress': 'ingress to egress',
  'ingress-to-local': 'ingress to local',
};

/** How each mode is made: program type, helper, flag (the talk's cheat sheet columns). */
export const MODE_DETAILS: Record<Mode, { program: string; attach: string; helper: string; flag: string }> = {
  'send-to-local': { program: 'SK_MSG', attach: 'sk_msg_verdict', helper: 'bpf_msg_redirect_map/hash()', flag: 'BPF_F_INGRESS' },
  'send-to-egress': { program: 'SK_MSG', attach: 'sk_msg_verdict', helper: 'bpf_msg_redirect_map/hash()', flag: 'none' },
  'ingress-to-egress': { program: 'SK_SKB', attach: 'skb_verdict', helper: 'bpf_sk_redirect_map/hash()', flag: 'none' },
  'ingress-to-local': { program: 'SK_SKB', attach: 'skb_verdict', helper: 'bpf_sk_redirect_map/hash()', flag: 'BPF_F_INGRESS' },
};

export const KIND_LABELS: Record<InsertKind, string> = {
  tcp: 'TCP',
  udp: 'UDP',
  'unix-stream': 'UNIX stream',
  'unix-dgram': 'UNIX dgram',
  'vsock-stream': 'VSOCK stream',
  'vsock-seqpacket': 'VSOCK seqpacket',
  'unix-seqpacket': 'UNIX seqpacket',
  'vsock-dgram': 'VSOCK dgram',
  'tcp-listen': 'TCP listening',
  'tcp-unconnected': 'TCP, not connected',
  'udp-unbound': 'UDP, unbound',
  'udp-bound': 'UDP, bound',
  'unix-stream-unconnected': 'UNIX stream, not connected',
};

/** Short column heads for narrow tables. */
export const KIND_SHORT: Record<RedirectKind, string> = {
  tcp: 'tcp',
  udp: 'udp',
  'unix-stream': 'unix-str',
  'unix-dgram': 'unix-dgram',
  'vsock-stream': 'vsock-str',
  'vsock-seqpacket': 'vsock-seq',
};

const errnoFields = {
  stage: z.string().optional(),
  errno: z.string().optional(),
  error: z.string().optional(),
  ms: z.number(),
};

export const RedirectProbe = z.object({
  probe: z.literal('redirect'),
  map: z.enum(MAPS),
  mode: z.enum(MODES),
  src: z.enum(REDIRECT_KINDS),
  dst: z.enum(REDIRECT_KINDS),
  /** works | refused | lost (no error, no bytes) | passthrough (normal path) | other | error (not set up) */
  outcome: z.enum(['works', 'refused', 'lost', 'passthrough', 'other', 'error']),
  sender: z.string().optional(),
  target: z.string().optional(),
  path: z.string().optional(),
  arrived: z.array(z.string()).optional(),
  verdict: z.object({ pass: z.number(), drop: z.number() }).optional(),
  ...errnoFields,
});
export type RedirectProbe = z.infer<typeof RedirectProbe>;

export const InsertProbe = z.object({
  probe: z.literal('insert'),
  map: z.enum(MAPS),
  kind: z.enum(INSERT_KINDS),
  outcome: z.enum(['accepted', 'refused']),
  ...errnoFields,
});
export type InsertProbe = z.infer<typeof InsertProbe>;

const StartLine = z.object({ probe: z.literal('start'), kernel: z.string(), machine: z.string().optional(), attached: z.boolean(), wait_ms: z.number() });
const EndLine = z.object({ probe: z.literal('end'), probes: z.number(), ms: z.number() });

/** One kernel's matrix. */
export interface Matrix {
  /** `uname -r` in the guest. */
  kernel: string;
  /** How the matrix is named in tables and diffs (the kernel, or "kernel #2" for a repeat). */
  label: string;
  accel?: string;
  backend?: string;
  /** What the probe ran on (runner, backend, arch, kernel, accel, guest image); set by the command that ran it. */
  fingerprint?: RunFingerprint;
  /** false: the probe ran with no program attached (the broken variant). */
  attached: boolean;
  waitMs: number;
  redirect: RedirectProbe[];
  insert: InsertProbe[];
  /** Probe count and time as the probe measured them in the guest; undefined when it did not finish. */
  probes?: number;
  totalMs?: number;
  startedAt?: string;
}

export class ProbeOutputError extends Error {}

/**
 * Reads the probe's output: its JSON lines, in order, ignoring every other
 * line (the text grid, the shell's chatter). Returns undefined when there is
 * no start line; throws when a probe line does not have the expected shape.
 */
export function parseProbeOutput(text: string): Matrix | undefined {
  let m: Matrix | undefined;
  for (const [i, line] of text.split('\n').entries()) {
    if (!line.startsWith('{"probe":')) continue;
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch {
      throw new ProbeOutputError(`line ${i + 1} of the probe's output is not JSON: ${line.slice(0, 120)}`);
    }
    const kind = (o as { probe: string }).probe;
    if (kind === 'start') {
      const s = StartLine.parse(o);
      // A second start line begins a new run of the probe: keep the last one.
      m = { kernel: s.kernel, label: s.kernel, attached: s.attached, waitMs: s.wait_ms, redirect: [], insert: [] };
      continue;
    }
    if (!m) continue;
    const parsed = kind === 'redirect' ? RedirectProbe.safeParse(o) : kind === 'insert' ? InsertProbe.safeParse(o) : kind === 'end' ? EndLine.safeParse(o) : undefined;
    if (!parsed) continue;
    if (!parsed.success) throw new ProbeOutputError(`line ${i + 1} of the probe's output: ${parsed.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
    const v = parsed.data;
    if (v.probe === 'redirect') m.redirect.push(v);
    else if (v.probe === 'insert') m.insert.push(v);
    else if (v.probe === 'end') {
      m.probes = v.probes;
      m.totalMs = v.ms;
    }
  }
  return m;
}

/** Every matrix printed in a text, e.g. a step's output (one per start line). */
export function findMatrices(text: string): Matrix[] {
  const parts = text.split(/(?=^\{"probe":"start")/m).filter((p) => p.startsWith('{"probe":"start"'));
  const out: Matrix[] = [];
  for (const p of parts) {
    try {
      const m = parseProbeOutput(p);
      if (m) out.push(m);
    } catch {
      /* not ours, or cut short: leave it out */
    }
  }
  return out;
}

export function findRedirect(m: Matrix, map: MapType, mode: Mode, src: RedirectKind, dst: RedirectKind): RedirectProbe | undefined {
  return m.redirect.find((p) => p.map === map && p.mode === mode && p.src === src && p.dst === dst);
}

export function findInsert(m: Matrix, map: MapType, kind: InsertKind): InsertProbe | undefined {
  return m.insert.find((p) => p.map === map && p.kind === kind);
}

const STAGES: Record<string, string> = {
  send: 'send()',
  'insert-src': 'inserting the in socket',
  'insert-dst': 'inserting the target',
  insert: 'insert',
  socket: 'socket()',
  attach: 'attaching the program',
};

/** The cell in words: "works", "refused at send() with EACCES", "lost (no error, no bytes)"… */
export function describeOutcome(p: RedirectProbe | InsertProbe): string {
  const at = p.stage ? ` at ${STAGES[p.stage] ?? p.stage}` : '';
  switch (p.outcome) {
    case 'works':
    case 'accepted':
      return p.outcome;
    case 'refused':
      return `refused${at} with ${p.errno ?? 'an error'}`;
    case 'lost':
      return `lost (no error, no bytes${p.verdict?.drop ? '; the program returned SK_DROP' : ''})`;
    case 'passthrough':
      return 'not redirected (the bytes took their normal path)';
    case 'other':
      return `bytes arrived elsewhere (${(p.arrived ?? []).join(', ') || 'nowhere'})`;
    case 'error':
      return `not measured: ${p.errno ?? 'error'}${at}`;
  }
}

/** A short cell text for tables: "works", "EACCES", "EOPNOTSUPP*" (* at insert), "lost", "normal", "n/a". */
export function cellText(p: RedirectProbe | InsertProbe | undefined): string {
  if (!p) return '-';
  switch (p.outcome) {
    case 'works':
    case 'accepted':
      return p.outcome;
    case 'refused':
      // Redirect cells: refused at send() unless starred (at insert). Insert cells: at insert unless at socket().
      if (p.probe === 'insert') return `${p.errno ?? '?'}${p.stage === 'socket' ? ' (socket)' : ''}`;
      return `${p.errno ?? '?'}${p.stage === 'send' ? '' : '*'}`;
    case 'lost':
      return 'lost';
    case 'passthrough':
      return 'normal';
    case 'other':
      return 'other';
    case 'error':
      return `n/a ${p.errno ?? ''}`.trim();
  }
}

/** What two cells are compared by: outcome, where it was refused, and with which errno (never times). */
export function outcomeKey(p: RedirectProbe | InsertProbe | undefined): string {
  if (!p) return 'not measured';
  return [p.outcome, p.stage, p.errno].filter(Boolean).join(' ');
}

/** Gives repeated kernels distinct labels: "6.12.1", "6.12.1 #2". */
export function labelMatrices(ms: Matrix[]): Matrix[] {
  const seen = new Map<string, number>();
  return ms.map((m) => {
    const n = (seen.get(m.kernel) ?? 0) + 1;
    seen.set(m.kernel, n);
    return { ...m, label: n === 1 ? m.kernel : `${m.kernel} #${n}` };
  });
}

/** Where the probes' time went: total, median, slowest. */
export function timing(m: Matrix): { probes: number; totalMs: number; medianMs: number; slowest?: RedirectProbe | InsertProbe } {
  const all = [...m.redirect, ...m.insert];
  const sorted = all.map((p) => p.ms).sort((a, b) => a - b);
  const slowest = all.reduce<RedirectProbe | InsertProbe | undefined>((a, p) => (!a || p.ms > a.ms ? p : a), undefined);
  return {
    probes: m.probes ?? all.length,
    totalMs: m.totalMs ?? sorted.reduce((a, b) => a + b, 0),
    medianMs: sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0,
    slowest,
  };
}
