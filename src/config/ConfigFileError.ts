/**
 * The error for a file named by the config that cannot be used.
 */
import { Data } from "effect"

/**
 * A file named by the config (host key, TLS certificate or key) that cannot be read or used.
 * @category errors
 */
export class ConfigFileError extends Data.TaggedError("ConfigFileError")<{
  readonly field: string
  readonly problem: string
}> {
  override get message(): string {
    return `${this.field}: ${this.problem}`
  }
}

