/**
 * What one soak run does, from environment variables (defaults are issue 7's
 * figures). Durations are written the way the server's config writes them
 * ("10 minutes", "20 seconds"). A value that does not parse stops the run
 * before anything starts.
 */
import { Duration } from "effect"

export interface Settings {
  /** SOAK_DURATION: how long the transfer load runs. */
  readonly durationMs: number
  /** SOAK_SFTP_SESSIONS, SOAK_FTP_SESSIONS: idle authenticated sessions held through the run. */
  readonly sftpSessions: number
  readonly ftpSessions: number
  /** SOAK_TRANSFERS: transfers running at once (half SFTP, half FTP; uploads and downloads alternate). */
  readonly transfers: number
  /** SOAK_FILE_MIB: size of every transferred file. */
  readonly fileBytes: number
  /** SOAK_PREAUTH_CONNECTIONS: silent TCP connections of the pre-auth phase. */
  readonly preAuthConnections: number
  /** SOAK_HANDSHAKE_TIMEOUT: the server's sftp.handshakeTimeout. */
  readonly handshakeTimeoutMs: number
  /** SOAK_IDLE_TIMEOUT: the server's idleTimeout; idle sessions send a keepalive every third of it on average. */
  readonly idleTimeoutMs: number
  /** SOAK_OPEN_PARALLEL: logins in progress at once while the idle sessions are opened. */
  readonly openParallel: number
  /** SOAK_USERS: users for the idle sessions, and as many for the transfers (each with its own temp root). */
  readonly users: number
  /** SOAK_MAX_PREAUTH, SOAK_MAX_PREAUTH_PER_IP: the server's maxPreAuthConnections and maxPreAuthConnectionsPerIp. */
  readonly maxPreAuthConnections: number
  readonly maxPreAuthConnectionsPerIp: number
}

export class SettingError extends Error {}

const env = (name: string): string | undefined => {
  const value = process.env[name]
  return value === undefined || value.trim() === "" ? undefined : value.trim()
}

const duration = (name: string, fallback: string): number => {
  const raw = env(name) ?? fallback
  const parsed = Duration.fromInput(raw as Duration.Input)
  if (parsed._tag !== "Some" || Duration.toMillis(parsed.value) <= 0) {
    throw new SettingError(`${name}=${JSON.stringify(raw)}: expected a positive duration such as "10 minutes"`)
  }
  return Duration.toMillis(parsed.value)
}

const count = (name: string, fallback: number, minimum = 0): number => {
  const raw = env(name)
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (!Number.isSafeInteger(value) || value < minimum) throw new SettingError(`${name}=${JSON.stringify(raw)}: expected an integer >= ${minimum}`)
  return value
}

export const readSettings = (): Settings => ({
  durationMs: duration("SOAK_DURATION", "10 minutes"),
  sftpSessions: count("SOAK_SFTP_SESSIONS", 1000),
  ftpSessions: count("SOAK_FTP_SESSIONS", 200),
  transfers: count("SOAK_TRANSFERS", 50, 2),
  fileBytes: count("SOAK_FILE_MIB", 8, 1) * 1024 * 1024,
  preAuthConnections: count("SOAK_PREAUTH_CONNECTIONS", 2000),
  handshakeTimeoutMs: duration("SOAK_HANDSHAKE_TIMEOUT", "20 seconds"),
  idleTimeoutMs: duration("SOAK_IDLE_TIMEOUT", "90 seconds"),
  openParallel: count("SOAK_OPEN_PARALLEL", 16, 1),
  users: count("SOAK_USERS", 10, 1),
  maxPreAuthConnections: count("SOAK_MAX_PREAUTH", 256, 1),
  maxPreAuthConnectionsPerIp: count("SOAK_MAX_PREAUTH_PER_IP", 32, 1)
})
