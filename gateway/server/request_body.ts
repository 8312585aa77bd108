/**
 * A request body as a pull-based ReadableStream over the connection: Content-Length or chunked framing,
 * read only as fast as the handler reads it, all of it within one deadline. A timeout or a malformed body
 * errors the stream and is kept in `error`: the server then answers with it (408 / 400) and closes.
 */
import type { ConnReader, FillResult } from "./conn_reader.ts";
import { HttpError, latin1, type RequestFraming } from "./http1.ts";
import { MAX_CHUNK_LINE_BYTES } from "./limits.ts";

type ChunkState = "size" | "data" | "data_end" | "trailers";
const CHUNK_SIZE_LINE = /^([0-9A-Fa-f]{1,12})(;.*)?$/;

export class RequestBody {
  readonly stream: ReadableStream<Uint8Array> | null;
  /** Every byte of the body was read: the connection may carry another request. */
  complete: boolean;
  error: HttpError | null = null;
  /** Called once when the last body byte has been read. */
  onComplete: (() => void) | null = null;
  #left: number;
  #chunk: ChunkState = "size";
  #trailerBytes = 0;
  #continued = false;

  constructor(
    readonly reader: ConnReader,
    framing: RequestFraming,
    readonly deadline: number,
    readonly maxTrailerBytes: number,
    readonly sendContinue: () => void,
  ) {
    this.#left = framing.body === "chunked" ? 0 : framing.body;
    this.complete = framing.body === 0;
    const chunked = framing.body === "chunked";
    const expectContinue = framing.expectContinue;
    this.stream = this.complete ? null : new ReadableStream<Uint8Array>({
      pull: async (ctrl) => {
        if (expectContinue && !this.#continued && reader.size === 0) {
          this.#continued = true;
          this.sendContinue();
        }
        try {
          const piece = chunked ? await this.#pullChunked() : await this.#pullFixed();
          if (piece !== null) ctrl.enqueue(piece);
          if (this.complete) ctrl.close();
        } catch (e) {
          this.error = e instanceof HttpError ? e : new HttpError(400, "bad_body", String(e));
          ctrl.error(this.error);
        }
      },
    }, { highWaterMark: 0 });
  }

  #finish(): void {
    this.complete = true;
    this.onComplete?.();
  }

  async #more(): Promise<void> {
    const r: FillResult = await this.reader.fill(this.deadline);
    if (r === "data") return;
    if (r === "timeout") throw new HttpError(408, "body_timeout", "the request body did not arrive in time");
    if (r === "full") throw new HttpError(400, "bad_body", "malformed chunked body");
    throw new HttpError(400, "incomplete_body", "the connection closed before the whole body arrived");
  }

  /** Up to `max` buffered bytes (reading if none are), copied out of the reader's buffer. */
  async #take(max: number): Promise<Uint8Array> {
    if (this.reader.size === 0) await this.#more();
    const n = Math.min(max, this.reader.size);
    const out = this.reader.view().slice(0, n);
    this.reader.consume(n);
    return out;
  }

  async #pullFixed(): Promise<Uint8Array> {
    const piece = await this.#take(this.#left);
    this.#left -= piece.length;
    if (this.#left === 0) this.#finish();
    return piece;
  }

  /** The text of the next CRLF-terminated line (consumed); `max` counts the CRLF. */
  async #line(max: number): Promise<string> {
    for (;;) {
      const v = this.reader.view();
      const lf = v.indexOf(10);
      if (lf >= 0) {
        if (lf === 0 || v[lf - 1] !== 13 || lf + 1 > max) {
          throw new HttpError(400, "bad_body", "malformed chunked body");
        }
        const s = latin1(v.subarray(0, lf - 1));
        this.reader.consume(lf + 1);
        return s;
      }
      if (v.length >= max) throw new HttpError(400, "bad_body", "malformed chunked body");
      await this.#more();
    }
  }

  /** The next piece of chunk data, or null when the body ended with this call. */
  async #pullChunked(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#chunk === "size") {
        const m = CHUNK_SIZE_LINE.exec(await this.#line(MAX_CHUNK_LINE_BYTES));
        if (!m) throw new HttpError(400, "bad_body", "malformed chunk size");
        this.#left = parseInt(m[1], 16);
        this.#chunk = this.#left === 0 ? "trailers" : "data";
      } else if (this.#chunk === "data") {
        const piece = await this.#take(this.#left);
        this.#left -= piece.length;
        if (this.#left === 0) this.#chunk = "data_end";
        return piece;
      } else if (this.#chunk === "data_end") {
        if ((await this.#line(2)) !== "") {
          throw new HttpError(400, "bad_body", "chunk data overruns its size");
        }
        this.#chunk = "size";
      } else {
        const trailer = await this.#line(this.maxTrailerBytes);
        this.#trailerBytes += trailer.length + 2;
        if (this.#trailerBytes > this.maxTrailerBytes) {
          throw new HttpError(431, "trailers_too_large", "chunked trailers are too large");
        }
        if (trailer === "") {
          this.#finish();
          return null;
        }
      }
    }
  }
}
