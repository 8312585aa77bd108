/**
 * Renders chat turns to tokens so that only the NEW turn is prefilled.
 *
 * With a model chat template (tokenizer_config.json `chat_template`, run by
 * @huggingface/jinja), a later turn is rendered as the text the template puts
 * after a finished assistant message: we render [user U, assistant A, ...new]
 * with marker strings U and A and keep what follows A — the end-of-turn
 * suffix of the previous answer, the new messages and the generation prompt.
 * The cache already holds everything before it.
 *
 * Fallback for models without a template (e.g. stories260K), documented in
 * docs/gateway.md:
 *
 *     <bos>System: {instructions}\n
 *     User: {text}\n
 *     Assistant: {answer}\n
 *     Assistant:
 *
 * i.e. one "Role: text" line per message and "Assistant:" as the generation
 * prompt; a later turn starts with "\n" to end the previous answer.
 */
import { Template } from "@huggingface/jinja";
import type { Tokenizer } from "../../runtime/types.ts";

export type ChatRole = "system" | "user" | "assistant";
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

const USER_MARK = "\u27e6sinkstream-user\u27e7";
const ASSISTANT_MARK = "\u27e6sinkstream-assistant\u27e7";

const ROLE_LABEL: Record<ChatRole, string> = { system: "System", user: "User", assistant: "Assistant" };

export class ChatRenderer {
  readonly template: Template | null;
  readonly tokenizer: Tokenizer;
  readonly usesTemplate: boolean;

  constructor(tokenizer: Tokenizer) {
    this.tokenizer = tokenizer;
    let t: Template | null = null;
    if (tokenizer.chatTemplate) {
      try {
        t = new Template(tokenizer.chatTemplate);
      } catch {
        t = null; // an unparsable template: use the fallback
      }
    }
    this.template = t;
    this.usesTemplate = t !== null;
  }

  #render(messages: ChatMessage[], addGenerationPrompt: boolean, bos: boolean): string {
    const special = this.tokenizer.specialTokens;
    return this.template!.render({
      ...special,
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: bos ? (special.bos_token ?? "") : "",
      eos_token: special.eos_token ?? "",
    });
  }

  /** Text of one turn: `first` = nothing is in the cache yet. */
  renderTurn(messages: ChatMessage[], first: boolean): string {
    if (this.template) {
      try {
        if (first) return this.#render(messages, true, true);
        const probe: ChatMessage[] = [
          { role: "user", content: USER_MARK },
          { role: "assistant", content: ASSISTANT_MARK },
          ...messages,
        ];
        const text = this.#render(probe, true, false);
        const at = text.indexOf(ASSISTANT_MARK);
        if (at >= 0) return text.slice(at + ASSISTANT_MARK.length);
        return this.#render(messages, true, false);
      } catch {
        // Templates may raise (e.g. on role order): fall through to the plain format.
      }
    }
    const lines = messages.map((m) => `${ROLE_LABEL[m.role]}: ${m.content}\n`).join("");
    return `${first ? "" : "\n"}${lines}Assistant:`;
  }

  /** Token ids of one turn (BOS added on the first turn when the text does not carry it). */
  encodeTurn(messages: ChatMessage[], first: boolean): number[] {
    const text = this.renderTurn(messages, first);
    const bosText = this.tokenizer.specialTokens.bos_token;
    const textHasBos = this.usesTemplate && !!bosText && text.startsWith(bosText);
    const ids = this.tokenizer.encode(textHasBos ? text.slice(bosText!.length) : text, { bos: false });
    return first && this.tokenizer.bosId >= 0 ? [this.tokenizer.bosId, ...ids] : ids;
  }
}

/**
 * Length of the longest prefix of `b` that does not end inside an incomplete UTF-8 sequence (a lead
 * byte followed by fewer continuation bytes than it announces). What follows it may still complete.
 */
function completeLength(b: Uint8Array): number {
  const n = b.length;
  let i = n - 1;
  while (i >= 0 && i >= n - 4 && (b[i] & 0xc0) === 0x80) i--;
  if (i < 0 || i < n - 4) return n;
  const lead = b[i];
  const need = lead >= 0xf0 && lead < 0xf8 ? 4 : lead >= 0xe0 && lead < 0xf0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return n - i < need ? i : n;
}

const UTF8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/**
 * Per tokenizer: each token's text when its bytes are complete UTF-8 on their own (decoded once, on
 * first use), null when they end inside a multi-byte sequence, undefined while not looked up yet.
 */
const TOKEN_TEXT = new WeakMap<Tokenizer, (string | null | undefined)[]>();

/**
 * Incremental, UTF-8-safe detokeniser. Hot path (once per streamed token): when no partial
 * multi-byte sequence is held back, a token's text comes from a per-tokenizer cache (no decode, no
 * allocation). Otherwise the held-back bytes plus the token's are decoded up to the last complete
 * sequence and the incomplete tail is held back. The text is the same as a streaming TextDecoder
 * fed token by token (invalid bytes become U+FFFD; a few invalid sequences, e.g. E0 80, come out
 * one token later than such a decoder would emit them).
 */
export class Detokenizer {
  #first = true;
  #carry: Uint8Array | null = null;
  #cache: (string | null | undefined)[];
  text = "";
  constructor(readonly tokenizer: Tokenizer, readonly stripLeadingSpace = false) {
    let c = TOKEN_TEXT.get(tokenizer);
    if (!c) TOKEN_TEXT.set(tokenizer, c = []);
    this.#cache = c;
  }
  push(id: number): string {
    let s: string | null | undefined = null;
    if (this.#carry === null) {
      s = this.#cache[id];
      if (s === undefined) {
        const bytes = this.tokenizer.tokenBytes(id);
        s = this.#cache[id] = completeLength(bytes) === bytes.length ? UTF8.decode(bytes) : null;
      }
    }
    if (s === null) s = this.#slow(this.tokenizer.tokenBytes(id));
    if (this.#first && s !== "") {
      if (this.stripLeadingSpace && s.startsWith(" ")) s = s.slice(1);
      this.#first = false;
    }
    this.text += s;
    return s;
  }
  #slow(bytes: Uint8Array): string {
    let buf = bytes;
    if (this.#carry !== null) {
      buf = new Uint8Array(this.#carry.length + bytes.length);
      buf.set(this.#carry);
      buf.set(bytes, this.#carry.length);
    }
    const cut = completeLength(buf);
    this.#carry = cut < buf.length ? buf.slice(cut) : null;
    return cut > 0 ? UTF8.decode(buf.subarray(0, cut)) : "";
  }
  /** End of stream: held-back bytes of an incomplete sequence come out as U+FFFD (or ""). */
  flush(): string {
    const c = this.#carry;
    this.#carry = null;
    const s = c === null ? "" : UTF8.decode(c);
    this.text += s;
    return s;
  }
}
