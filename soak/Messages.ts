/**
 * What the soak's processes say to each other over the IPC channel of
 * `child_process.fork`: the orchestrator (which also hosts the server) sends a
 * client process its parameters first, then commands; the client answers with
 * the messages below. Types only, shared by both sides.
 */

/** A login the server knows. */
export interface Login {
  readonly username: string
  readonly password: string
}

/** Where the server listens and how a client trusts it. */
export interface Target {
  readonly sftpPort: number
  readonly ftpPort: number
  /** PEM of the FTPS certificate (self-signed for the soak). */
  readonly ca: string
}

/** Something that went wrong in a client, kept with how often it happened. */
export interface Failure {
  readonly what: string
  readonly message: string
  readonly count: number
}

// --- idle sessions -----------------------------------------------------------

export interface IdleParams {
  readonly kind: "idle"
  readonly target: Target
  readonly logins: ReadonlyArray<Login>
  readonly sftpSessions: number
  readonly ftpSessions: number
  /** Logins in progress at once while opening (the server caps pre-auth connections per IP). */
  readonly parallel: number
  /** Mean interval of the keepalive request (SFTP realpath, FTP NOOP) of each session. */
  readonly keepaliveMs: number
}

/** The SFTP sessions are up; the FTP ones are opened on "continue". */
export interface IdleSftpReady {
  readonly type: "sftpReady"
  readonly sftp: number
}

export interface IdleReady {
  readonly type: "ready"
  readonly sftp: number
  readonly ftp: number
  readonly openMs: number
  readonly failures: ReadonlyArray<Failure>
}

export interface IdleChecked {
  readonly type: "checked"
  /** Sessions that answered one request just now. */
  readonly sftp: number
  readonly ftp: number
  readonly failures: ReadonlyArray<Failure>
}

export interface IdleClosed {
  readonly type: "closed"
  /** Sessions still up when the soak closed them. */
  readonly closed: number
  readonly keepalivesSent: number
  readonly keepalivesFailed: number
  /** Sessions whose connection ended without the soak asking (the first 50 named). */
  readonly lost: number
  readonly lostSessions: ReadonlyArray<Failure>
  /** Keepalive and login failures. */
  readonly failures: ReadonlyArray<Failure>
}

export type IdleCommand = { readonly type: "continue" } | { readonly type: "check" } | { readonly type: "close" }
export type IdleMessage = IdleSftpReady | IdleReady | IdleChecked | IdleClosed

// --- transfers ---------------------------------------------------------------

export interface TransferSlot {
  readonly login: Login
  /** The user's root on the host: uploads are checked there, byte for byte. */
  readonly root: string
}

export interface TransferParams {
  readonly kind: "transfers"
  readonly protocol: "sftp" | "ftp"
  readonly target: Target
  readonly slots: ReadonlyArray<TransferSlot>
  readonly fileBytes: number
  /** Every root holds this file (`fileBytes` long). */
  readonly downloadPath: string
  readonly downloadSha256: string
  /** Transfers per slot, then the process reports and exits; 0 runs until told to stop. */
  readonly rounds: number
  /**
   * Source address of SFTP connections. FTP ones keep the default (127.0.0.1):
   * the server accepts a passive data connection only from the control
   * connection's address, and basic-ftp cannot bind its data sockets.
   */
  readonly sourceIp: string | undefined
}

export interface TransferCounts {
  readonly completed: number
  readonly failed: number
  /** Completed, but the bytes that arrived differ from the bytes sent. */
  readonly mismatched: number
  readonly bytes: number
  /** Wall time of each completed transfer. */
  readonly durationsMs: ReadonlyArray<number>
}

export interface TransferReport {
  readonly type: "report"
  readonly protocol: "sftp" | "ftp"
  readonly upload: TransferCounts
  readonly download: TransferCounts
  readonly failures: ReadonlyArray<Failure>
}

export type TransferCommand = { readonly type: "stop" }
export type TransferMessage = TransferReport | { readonly type: "started" }

// --- prober ------------------------------------------------------------------

export interface ProberParams {
  readonly kind: "prober"
  readonly target: Target
  readonly login: Login
  /** A file in the login's root that STAT probes ask about. */
  readonly statPath: string
  readonly statSessions: number
  readonly statIntervalMs: number
  readonly handshakeIntervalMs: number
  readonly sourceIp: string
}

/** Samples of one phase, in milliseconds. */
export interface PhaseSamples {
  readonly handshakeMs: ReadonlyArray<number>
  readonly handshakeFailed: number
  readonly handshakeFailures: ReadonlyArray<Failure>
  readonly statMs: ReadonlyArray<number>
  readonly statFailed: number
  readonly statFailures: ReadonlyArray<Failure>
}

export type ProberCommand = { readonly type: "phase"; readonly name: string } | { readonly type: "stop" }
export type ProberMessage =
  | { readonly type: "started"; readonly failures: ReadonlyArray<Failure> }
  | { readonly type: "report"; readonly phases: Record<string, PhaseSamples>; readonly lost: number }

// --- pre-auth flood ----------------------------------------------------------

export interface FloodParams {
  readonly kind: "flood"
  readonly port: number
  readonly connections: number
  /** Source addresses, used in turn. */
  readonly sourceIps: ReadonlyArray<string>
  /** Connects in progress at once. */
  readonly parallel: number
  /** The server's handshake timeout: a connection closed well before it was refused, not timed out. */
  readonly handshakeTimeoutMs: number
  /** Give up waiting for the server to drop the connections after this long. */
  readonly deadlineMs: number
}

export interface FloodReport {
  readonly type: "report"
  readonly opened: number
  readonly connectFailures: ReadonlyArray<Failure>
  /** Closed by the server before half the handshake timeout had passed: refused at accept. */
  readonly refused: number
  /** Closed by the server later: dropped at the handshake timeout. */
  readonly dropped: number
  /** Connections that received the server's greeting (SSH version line) before they closed. */
  readonly greeted: number
  /** Milliseconds from connect to close, for the refused and the dropped ones. */
  readonly refusedAfterMs: ReadonlyArray<number>
  readonly droppedAfterMs: ReadonlyArray<number>
  /** Still open when the deadline came: the server never dropped them. */
  readonly stillOpen: number
  /** Per source address: opened, refused, dropped. */
  readonly perIp: Record<string, { opened: number; refused: number; dropped: number }>
  readonly openMs: number
}

export type FloodMessage = { readonly type: "opened"; readonly opened: number } | FloodReport

export type ClientParams = IdleParams | TransferParams | ProberParams | FloodParams
