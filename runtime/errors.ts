/**
 * Typed errors of the runtime. Native failures carry the ss_status name as `code` (e.g.
 * "SS_ERR_FORMAT", from the library's ss_status_name), the numeric status and the message from the
 * C library. Binding-level errors (engine busy, closed handle, a value the C ABI cannot represent)
 * have status -1. This module does not touch FFI: the gateway may import it freely.
 */

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
  | "SS_ERR_EMPTY_MASK"
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

export interface InvalidArgumentOptions {
  /** ss_status when the C library reported it (default -1: raised by the binding). */
  status?: number;
  /** The option at fault when known, by its TypeScript name (e.g. "sinks", "topK"). */
  field?: string;
}

/** SS_ERR_INVALID_ARGUMENT: bad parameter, bad token id, duplicate sequence in a step... */
export class InvalidArgumentError extends SinkstreamError {
  /** The option at fault when known (e.g. "sinks" for sinks >= capacity). */
  readonly field?: string;
  constructor(message: string, options: InvalidArgumentOptions = {}) {
    super("SS_ERR_INVALID_ARGUMENT", message, options.status ?? -1);
    this.name = "InvalidArgumentError";
    if (options.field !== undefined) this.field = options.field;
  }
}
/** SS_ERR_IO: a file cannot be opened, read or mapped. */
export class IoError extends SinkstreamError {
  constructor(message: string, status = -1) {
    super("SS_ERR_IO", message, status);
    this.name = "IoError";
  }
}
/** SS_ERR_FORMAT: malformed or unsupported model file. */
export class ModelFormatError extends SinkstreamError {
  constructor(message: string, status = -1) {
    super("SS_ERR_FORMAT", message, status);
    this.name = "ModelFormatError";
  }
}
/** SS_ERR_OUT_OF_MEMORY. */
export class OutOfMemoryError extends SinkstreamError {
  constructor(message: string, status = -1) {
    super("SS_ERR_OUT_OF_MEMORY", message, status);
    this.name = "OutOfMemoryError";
  }
}
/** SS_ERR_CONTEXT_FULL: a dense sequence has no room left. */
export class ContextFullError extends SinkstreamError {
  constructor(message: string, status = -1) {
    super("SS_ERR_CONTEXT_FULL", message, status);
    this.name = "ContextFullError";
  }
}
/** SS_ERR_NOT_FOUND: unknown sequence id. */
export class NotFoundError extends SinkstreamError {
  constructor(message: string, status = -1) {
    super("SS_ERR_NOT_FOUND", message, status);
    this.name = "NotFoundError";
  }
}
/** SS_ERR_BACKEND: backend failure (e.g. a CUDA error), or a sequence such a failure left broken. */
export class BackendError extends SinkstreamError {
  constructor(message: string, status = -1) {
    super("SS_ERR_BACKEND", message, status);
    this.name = "BackendError";
  }
}
/** SS_ERR_UNSUPPORTED: backend / feature not built or not available. */
export class BackendUnsupportedError extends SinkstreamError {
  constructor(message: string, status = -1) {
    super("SS_ERR_UNSUPPORTED", message, status);
    this.name = "BackendUnsupportedError";
  }
}
/** SS_ERR_LIMIT: max sequences or max batch tokens reached. */
export class LimitError extends SinkstreamError {
  constructor(message: string, status = -1) {
    super("SS_ERR_LIMIT", message, status);
    this.name = "LimitError";
  }
}
/** SS_ERR_EMPTY_MASK: a step item's token mask allows no token of the vocabulary. */
export class EmptyMaskError extends SinkstreamError {
  constructor(message: string, status = -1) {
    super("SS_ERR_EMPTY_MASK", message, status);
    this.name = "EmptyMaskError";
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

/**
 * The typed error of a failing native call: `code` is the status name the library gave
 * (ss_status_name), `status` its number, `field` the option at fault when known.
 */
export function errorFromStatus(
  code: string,
  message: string,
  status: number,
  field?: string,
): SinkstreamError {
  switch (code) {
    case "SS_ERR_INVALID_ARGUMENT":
      return new InvalidArgumentError(message, { status, field });
    case "SS_ERR_IO":
      return new IoError(message, status);
    case "SS_ERR_FORMAT":
      return new ModelFormatError(message, status);
    case "SS_ERR_OUT_OF_MEMORY":
      return new OutOfMemoryError(message, status);
    case "SS_ERR_CONTEXT_FULL":
      return new ContextFullError(message, status);
    case "SS_ERR_NOT_FOUND":
      return new NotFoundError(message, status);
    case "SS_ERR_BACKEND":
      return new BackendError(message, status);
    case "SS_ERR_UNSUPPORTED":
      return new BackendUnsupportedError(message, status);
    case "SS_ERR_LIMIT":
      return new LimitError(message, status);
    case "SS_ERR_EMPTY_MASK":
      return new EmptyMaskError(message, status);
    default:
      return new SinkstreamError("SS_ERR_UNKNOWN", `${message} (${code}, status ${status})`, status);
  }
}
