/**
 * Virtual paths: what a client sees as a path, cleaned once at the protocol seam.
 *
 * A `VirtualPath` is always absolute ("/" is the user's root), has no "." or ".."
 * components, no empty components and no trailing "/". Only `VirtualPath.resolve`
 * makes one, so every service that takes a `VirtualPath` knows it was cleaned.
 *
 * Safety does not depend on this cleaning: the Jail resolves every path in the
 * kernel with RESOLVE_IN_ROOT. Cleaning exists so that both protocols name a file
 * the same way, and so errors and events carry a stable, client-relative path.
 */
import { Data, Result } from "effect"

declare const VirtualPathBrand: unique symbol

/**
 * An absolute, cleaned path inside a user's root.
 * @category models
 */
export type VirtualPath = string & { readonly [VirtualPathBrand]: "VirtualPath" }

/**
 * A path that cannot name anything in a jail.
 * @category errors
 */
export class InvalidPath extends Data.TaggedError("InvalidPath")<{
  readonly input: string
  readonly problem: "Nul" | "ControlCharacter" | "InvalidUnicode" | "TooLong"
}> {}

/** Longest path the jail accepts, in UTF-8 bytes (Linux PATH_MAX). */
export const maxPathBytes = 4096

/** The user's root. */
export const root = "/" as VirtualPath

// Names with control characters are refused everywhere: they would let a client
// inject lines into FTP replies, listings and logs (CR/LF) or truncate C strings (NUL).
const controlCharacter = /[\u0000-\u001f\u007f]/

/**
 * Resolves `input` (absolute, or relative to `cwd`) into a clean virtual path.
 * ".." never climbs above "/", exactly as a chroot would behave.
 * @category constructors
 */
export const resolve = (cwd: VirtualPath, input: string): Result.Result<VirtualPath, InvalidPath> => {
  if (input.includes("\u0000")) return Result.fail(new InvalidPath({ input, problem: "Nul" }))
  if (controlCharacter.test(input)) return Result.fail(new InvalidPath({ input, problem: "ControlCharacter" }))
  if (!input.isWellFormed()) return Result.fail(new InvalidPath({ input, problem: "InvalidUnicode" }))
  const joined = input.startsWith("/") ? input : `${cwd}/${input}`
  const parts: Array<string> = []
  for (const part of joined.split("/")) {
    if (part === "" || part === ".") continue
    if (part === "..") parts.pop()
    else parts.push(part)
  }
  const path = `/${parts.join("/")}`
  if (Buffer.byteLength(path) > maxPathBytes) return Result.fail(new InvalidPath({ input, problem: "TooLong" }))
  return Result.succeed(path as VirtualPath)
}

/**
 * The jail-relative form the native addon takes: no leading "/", "" for the root.
 * @category constructors
 */
export const toRelative = (path: VirtualPath): string => path.slice(1)

/**
 * The parent directory ("/" for "/").
 * @category constructors
 */
export const parent = (path: VirtualPath): VirtualPath => {
  const cut = path.lastIndexOf("/")
  return (cut <= 0 ? "/" : path.slice(0, cut)) as VirtualPath
}

/**
 * The final component ("" for "/").
 * @category constructors
 */
export const basename = (path: VirtualPath): string => path.slice(path.lastIndexOf("/") + 1)

/**
 * Joins a clean directory and one entry name read from it.
 * @category constructors
 */
export const child = (dir: VirtualPath, name: string): VirtualPath =>
  (dir === "/" ? `/${name}` : `${dir}/${name}`) as VirtualPath

/**
 * Whether `path` is `ancestor` itself or lies below it.
 * @category constructors
 */
export const isWithin = (path: VirtualPath, ancestor: VirtualPath): boolean =>
  ancestor === "/" || path === ancestor || path.startsWith(`${ancestor}/`)
