/**
 * An error whose message is fit for the operator as is: the CLI prints it as one line
 * `cert-agent: <message>` and exits non-zero. Never carries the token or a key.
 */
export class AgentError extends Error {
  constructor(
    message: string,
    /** HTTP status from the CA when the CA refused (401 = the token or the cert was not accepted). */
    readonly status?: number,
  ) {
    super(message);
    this.name = "AgentError";
  }
}
