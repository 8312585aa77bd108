/** A `text/event-stream` response: one `data: <json>` event per object, `data: [DONE]` at the end. */
const enc = new TextEncoder();

export class SseStream {
  readonly body: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;

  /** `onCancel`: the client went away (the stream was cancelled). */
  constructor(onCancel: () => void) {
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      cancel: onCancel,
    });
  }

  /** One event; false when the stream is closed. */
  send(obj: unknown): boolean {
    try {
      this.#controller.enqueue(enc.encode(`data: ${JSON.stringify(obj)}\n\n`));
      return true;
    } catch {
      return false;
    }
  }

  /** `data: [DONE]`, then close. */
  end(): void {
    try {
      this.#controller.enqueue(enc.encode("data: [DONE]\n\n"));
      this.#controller.close();
    } catch { /* closed */ }
  }

  response(): Response {
    return new Response(this.body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "connection": "keep-alive",
      },
    });
  }
}
