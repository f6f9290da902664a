/**
 * The rule for usernames, shared by every registry backend.
 *
 * Usernames end up in paths (home directories, placeholders), logs and protocol
 * replies, so anything that could climb a path ("/", "\\", ".."), inject a line
 * (control characters) or grow without bound is refused up front (CVE-2026-30915:
 * a username expanded into a path).
 */

/** Longest username, in UTF-8 bytes. */
export const maxUsernameBytes = 64

// C0 controls, DEL and C1 controls.
const controlCharacter = /[\u0000-\u001f\u007f-\u009f]/

/**
 * Why `name` is not a valid username, or undefined when it is.
 * @category constructors
 */
export const usernameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "is empty"
  if (Buffer.byteLength(name) > maxUsernameBytes) return `is longer than ${maxUsernameBytes} bytes`
  if (!name.isWellFormed()) return "is not valid Unicode"
  if (controlCharacter.test(name)) return "contains a control character"
  if (name.includes("/") || name.includes("\\")) return "contains a slash"
  if (name.includes("..")) return "contains \"..\""
  if (name.trim() !== name) return "starts or ends with white space"
  return undefined
}
