// The lab file format (labs/NN-name/lab.yaml), as a schema. A lab is the text
// a learner reads and, step by step, the command to run beside what it must
// print or return. See docs/authoring.md.
import { z } from 'zod';

/** What one output stream (stdout, stderr, or both as `output`) must hold. */
const oneOrMany = z.union([z.string(), z.array(z.string()).min(1)]);
export const TextExpect = z.union([
  z.string(), // shorthand for { contains: "…" }
  z
    .object({
      contains: oneOrMany.optional(),
      not_contains: oneOrMany.optional(),
      /** JavaScript regular expressions, multi-line mode (^ and $ match at line ends). */
      matches: oneOrMany.optional(),
      not_matches: oneOrMany.optional(),
      /** The whole stream, leading and trailing white space ignored. */
      equals: z.string().optional(),
    })
    .strict(),
]);
export type TextExpect = z.infer<typeof TextExpect>;

export const Expect = z
  .object({
    /** Exit status: a number, or "nonzero". Default 0 (or nonzero with `errno`). */
    exit: z.union([z.number().int().min(0).max(255), z.literal('nonzero')], { error: 'an exit status from 0 to 255, or "nonzero"' }).optional(),
    /** The step must fail with this errno: by name (EACCES) or by its message (Permission denied). */
    errno: z.string().regex(/^E[A-Z0-9]+$/, 'an errno name such as EINVAL').optional(),
    stdout: TextExpect.optional(),
    stderr: TextExpect.optional(),
    /** stdout and stderr together. */
    output: TextExpect.optional(),
  })
  .strict();
export type Expect = z.infer<typeof Expect>;

const Needs = z
  .object({
    /** Lowest kernel version the lab works on, e.g. "5.15". */
    kernel: z.string().regex(/^\d+\.\d+(\.\d+)?$/).optional(),
    /** Kernel config options (without CONFIG_) that must be y or m. */
    config: z.array(z.string().regex(/^[A-Z0-9_]+$/)).optional(),
  })
  .strict();

export const Step = z
  .object({
    title: z.string().min(1),
    /** Markdown shown before the step runs. */
    text: z.string().optional(),
    /** The shell command(s), as a learner would type them. */
    run: z.string().min(1),
    expect: Expect.optional(),
    /** Seconds before the step is killed. */
    timeout: z.number().positive().max(3600).optional(),
    /** Start `run` in the background under this name (its output: $STATE/<name>.log); later steps may check it. */
    background: z.string().regex(/^[a-z0-9_-]+$/).optional(),
    /** With `background`: wait until its output holds this text. */
    ready: z.string().optional(),
    /** Markdown shown when the step fails: what to look at, without giving the answer away. */
    hint: z.string().optional(),
    /** This step alone needs a newer kernel or more options; on a kernel without them it is skipped, not failed. */
    needs: Needs.optional(),
  })
  .strict();
export type Step = z.infer<typeof Step>;

export const Lab = z
  .object({
    title: z.string().min(1),
    /** Markdown: what the learner reads before the steps. */
    text: z.string().optional(),
    needs: Needs.optional(),
    /**
     * Files the learner completes, in the lab's exercise/ folder; the reference
     * is in solution/. Steps use them as $EXERCISE/<file> ($EXERCISE is the
     * solution/ folder with --solutions).
     */
    exercise: z
      .object({
        files: z.array(z.string().regex(/^[\w.-]+$/, 'a file name in exercise/')).min(1),
        /** Markdown: what to do. */
        text: z.string().optional(),
      })
      .strict()
      .optional(),
    /** Run before the first step and after the last (even after a failure): remove all the lab creates. */
    cleanup: z.string().optional(),
    steps: z.array(Step).min(1),
  })
  .strict();
export type LabSpec = z.infer<typeof Lab>;
