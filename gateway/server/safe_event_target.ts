/**
 * An EventTarget whose listeners cannot take the process down: Deno reports an exception thrown by an
 * EventTarget listener as uncaught and exits, so one faulty handler of one socket would end every
 * session. Here each listener runs in its own try/catch and a throw is logged.
 */

type Listener = EventListenerOrEventListenerObject;
interface Entry {
  listener: Listener;
  once: boolean;
}

export class SafeEventTarget implements EventTarget {
  #listeners = new Map<string, Entry[]>();

  addEventListener(
    type: string,
    listener: Listener | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    if (listener === null) return;
    const list = this.#listeners.get(type) ?? [];
    if (list.some((e) => e.listener === listener)) return;
    list.push({ listener, once: typeof options === "object" && options.once === true });
    this.#listeners.set(type, list);
  }

  removeEventListener(type: string, listener: Listener | null): void {
    const list = this.#listeners.get(type);
    if (!list || listener === null) return;
    this.#listeners.set(type, list.filter((e) => e.listener !== listener));
  }

  /** Calls the `on<type>` property handler, then the listeners in the order they were added. */
  dispatchEvent(event: Event): boolean {
    const attribute = (this as unknown as Record<string, unknown>)[`on${event.type}`];
    if (typeof attribute === "function") this.#call(attribute as EventListener, event);
    for (const e of [...(this.#listeners.get(event.type) ?? [])]) {
      if (e.once) this.removeEventListener(event.type, e.listener);
      this.#call(
        typeof e.listener === "function" ? e.listener : e.listener.handleEvent.bind(e.listener),
        event,
      );
    }
    return !event.defaultPrevented;
  }

  #call(fn: EventListener, event: Event): void {
    try {
      fn.call(this, event);
    } catch (e) {
      console.error(`sinkstream: a ${event.type} listener threw:`, e);
    }
  }
}
