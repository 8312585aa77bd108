/**
 * Typed errors of the runtime. Native failures carry the ss_status name as `code`
 * (e.g. "SS_ERR_FORMAT") and the message from the C library. Binding-level errors
 * (engine busy, closed handle) use codes that are not C status names.
 * This module does not touch FFI: the gateway may import it freely.
 */

/** Status names of csrc/include/sinkstream.h by numeric value. */
export const STATUS_NAMES: readonly string[] = [
  "SS_OK",
  "SS_ERR_INVALID_ARGUMENT",
  "SS_ERR_IO",
  "SS_ERR_FORMAT",
  "SS_ERR_OUT_OF_MEMORY",
  "SS_ERR_CONTEXT_FULL",
  "SS_ERR_NOT_FOUND",
  "SS_ERR_BACKEND",
  "SS_ERR_UNSUPPORTED",
  "SS_ERR_LIMIT",
];

export type SinkstreamErrorCode =
  | "SS_ERR_INVALID_ARGUMENT"
  | "SS_ERR_IO"
  | "SS_ERR_FORMAT"
  | "SS_ERR_OUT_OF_MEMORY"
  | "SS_ERR_CONTEXT_FULL"
  | "SS_ERR_NOT_FOUND"
  | "SS_ERR_BACKEND"
  | "SS_ERR_UNSUPPORTED"
  | "SS_ERR_LIMIT"
  | "SS_ERR_UNKNOWN"
  /** Binding: a step is in flight on this engine. */
  | "SS_ERR_BUSY"
  /** Binding: the handle was closed. */
  | "SS_ERR_CLOSED"
  /** Binding: the native library cannot be found, built or opened. */
  | "SS_ERR_LIBRARY";

/** Base class of every runtime error. */
export class SinkstreamError extends Error {
  /** Status name, e.g. "SS_ERR_FORMAT". */
  readonly code: SinkstreamErrorCode;
  /** Numeric ss_status, or -1 for binding-level errors. */
  readonly status: number;
  constructor(code: SinkstreamErrorCode, message: string, status = -1, options?: ErrorOptions) {
    super(message, options);
    this.name = "SinkstreamError";
    this.code = code;
    this.status = status;
  }
}

/** SS_ERR_INVALID_ARGUMENT: bad parameter, bad token id, duplicate sequence in a step... */
export class InvalidArgumentError extends SinkstreamError {
  constructor(message: string, status = 1) {
    super("SS_ERR_INVALID_ARGUMENT", message, status);
    this.name = "InvalidArgumentError";
  }
}
/** SS_ERR_IO: a file cannot be opened, read or mapped. */
export class IoError extends SinkstreamError {
  constructor(message: string, status = 2) {
    super("SS_ERR_IO", message, status);
    this.name = "IoError";
  }
}
/** SS_ERR_FORMAT: malformed or unsupported model file. */
export class ModelFormatError extends SinkstreamError {
  constructor(message: string, status = 3) {
    super("SS_ERR_FORMAT", message, status);
    this.name = "ModelFormatError";
  }
}
/** SS_ERR_OUT_OF_MEMORY. */
export class OutOfMemoryError extends SinkstreamError {
  constructor(message: string, status = 4) {
    super("SS_ERR_OUT_OF_MEMORY", message, status);
    this.name = "OutOfMemoryError";
  }
}
/** SS_ERR_CONTEXT_FULL: a dense sequence has no room left. */
export class ContextFullError extends SinkstreamError {
  constructor(message: string, status = 5) {
    super("SS_ERR_CONTEXT_FULL", message, status);
    this.name = "ContextFullError";
  }
}
/** SS_ERR_NOT_FOUND: unknown sequence id. */
export class NotFoundError extends SinkstreamError {
  constructor(message: string, status = 6) {
    super("SS_ERR_NOT_FOUND", message, status);
    this.name = "NotFoundError";
  }
}
/** SS_ERR_BACKEND: backend failure (e.g. a CUDA error). */
export class BackendError extends SinkstreamError {
  constructor(message: string, status = 7) {
    super("SS_ERR_BACKEND", message, status);
    this.name = "BackendError";
  }
}
/** SS_ERR_UNSUPPORTED: backend / feature not built or not available. */
export class BackendUnsupportedError extends SinkstreamError {
  constructor(message: string, status = 8) {
    super("SS_ERR_UNSUPPORTED", message, status);
    this.name = "BackendUnsupportedError";
  }
}
/** SS_ERR_LIMIT: max sequences or max batch tokens reached. */
export class LimitError extends SinkstreamError {
  constructor(message: string, status = 9) {
    super("SS_ERR_LIMIT", message, status);
    this.name = "LimitError";
  }
}
/** A call on an engine while one of its steps is in flight (calls must be serialised). */
export class EngineBusyError extends SinkstreamError {
  constructor(message: string) {
    super("SS_ERR_BUSY", message);
    this.name = "EngineBusyError";
  }
}
/** A call on a closed model or engine. */
export class ClosedError extends SinkstreamError {
  constructor(message: string) {
    super("SS_ERR_CLOSED", message);
    this.name = "ClosedError";
  }
}
/** The native library is missing, cannot be built or cannot be opened. */
export class NativeLibraryError extends SinkstreamError {
  constructor(message: string, options?: ErrorOptions) {
    super("SS_ERR_LIBRARY", message, -1, options);
    this.name = "NativeLibraryError";
  }
}

/** The typed error for a failing ss_status and its message. */
export function errorFromStatus(status: number, message: string): SinkstreamError {
  const name = STATUS_NAMES[status] ?? "SS_ERR_UNKNOWN";
  const msg = message || name;
  switch (status) {
    case 1:
      return new InvalidArgumentError(msg);
    case 2:
      return new IoError(msg);
    case 3:
      return new ModelFormatError(msg);
    case 4:
      return new OutOfMemoryError(msg);
    case 5:
      return new ContextFullError(msg);
    case 6:
      return new NotFoundError(msg);
    case 7:
      return new BackendError(msg);
    case 8:
      return new BackendUnsupportedError(msg);
    case 9:
      return new LimitError(msg);
    default:
      return new SinkstreamError("SS_ERR_UNKNOWN", `${msg} (status ${status})`, status);
  }
}
