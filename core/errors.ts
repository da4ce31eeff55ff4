// An error the user can act on: what is wrong, and the exact command that fixes it.
// The CLI prints these without a stack trace and exits with EXIT.usage (2).
export class UserError extends Error {
  constructor(
    message: string,
    /** The command (or short instruction) that fixes it. */
    readonly fix?: string,
    /** Extra lines shown below, e.g. the tail of a console log. */
    readonly details?: string,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
