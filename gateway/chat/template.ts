/**
 * Renders chat turns to tokens so that only the NEW turn is prefilled.
 *
 * With a model chat template (tokenizer_config.json `chat_template`, run by
 * @huggingface/jinja), a later turn is rendered as the text the template puts
 * after a finished assistant message: we render [user U, assistant A, ...new]
 * and keep what follows A — the end-of-turn suffix of the previous answer, the
 * new messages and the generation prompt. The cache already holds everything
 * before it.
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
 *
 * A turn is rendered to segments: the template's markup, where special-token
 * text ("</s>", "<|im_start|>") becomes its ids, and each message's content,
 * where it is plain text — a user cannot inject a turn by typing "</s><s>[INST]"
 * (see turn_segments.ts). Large turns are encoded off the event loop by
 * encodeTurnAsync (off_thread.ts).
 */
import { Template } from "@huggingface/jinja";
import type { TextSegment, Tokenizer } from "../../runtime/types.ts";
import { OffThreadEncoder } from "./off_thread.ts";
import { type ChatMessage, fallbackSegments, templateSegments } from "./turn_segments.ts";

export type { ChatMessage, ChatRole } from "./turn_segments.ts";
export { EncoderBusyError } from "./off_thread.ts";

/**
 * Turns whose message contents total fewer UTF-16 units than this are encoded inline by
 * encodeTurnAsync: below it the encode costs less than a round trip to the worker does (measured, see
 * docs/decisions.md and bench/tokenize_offload.ts).
 */
export const INLINE_TURN_CHARS = 4 * 1024;

export class ChatRenderer {
  readonly template: Template | null;
  readonly tokenizer: Tokenizer;
  readonly usesTemplate: boolean;
  #offThread: OffThreadEncoder | null = null;
  #closed = false;

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

  /** Markup and content segments of one turn: `first` = nothing is in the cache yet. */
  renderSegments(messages: ChatMessage[], first: boolean): TextSegment[] {
    if (this.template) {
      try {
        return templateSegments(this.template, this.tokenizer.specialTokens, messages, first);
      } catch {
        // Templates may raise (e.g. on role order): fall through to the plain format.
      }
    }
    return fallbackSegments(messages, first);
  }

  /** Text of one turn. */
  renderTurn(messages: ChatMessage[], first: boolean): string {
    return this.renderSegments(messages, first).map((s) => s.text).join("");
  }

  /** Token ids of one turn (BOS added on the first turn; a BOS the template writes first is that one). */
  encodeTurn(messages: ChatMessage[], first: boolean): number[] {
    const segments = this.renderSegments(messages, first);
    const bosText = this.tokenizer.specialTokens.bos_token;
    const head = segments[0];
    if (this.usesTemplate && bosText && head?.special && head.text.startsWith(bosText)) {
      segments[0] = { text: head.text.slice(bosText.length), special: true };
    }
    const ids = this.tokenizer.encodeSegments
      ? this.tokenizer.encodeSegments(segments)
      : this.tokenizer.encode(segments.map((s) => s.text).join(""), { bos: false });
    if (first && this.tokenizer.bosId >= 0) ids.unshift(this.tokenizer.bosId); // (a spread copies 1M ids slowly)
    return ids;
  }

  /**
   * encodeTurn off the event loop for large turns (in a Worker holding its own tokenizer and template,
   * loaded from the same files); the same ids. Rejects with EncoderBusyError when the worker's queue is
   * full. Inline when the turn is small, the tokenizer cannot be loaded in a worker (no `source`), or
   * after close().
   */
  encodeTurnAsync(messages: ChatMessage[], first: boolean): Promise<number[]> {
    const chars = messages.reduce((n, m) => n + m.content.length, 0);
    if (chars < INLINE_TURN_CHARS || !this.tokenizer.source || this.#closed) {
      try {
        return Promise.resolve(this.encodeTurn(messages, first));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const t = this.tokenizer;
    this.#offThread ??= new OffThreadEncoder(t.source!, {
      vocabSize: t.vocabSize,
      bosId: t.bosId,
      eosId: t.eosId,
      chatTemplate: t.chatTemplate,
    });
    return this.#offThread.encodeTurn(messages, first, chars);
  }

  /** Stop the worker (if one was started; turns waiting in it are rejected); later turns run inline. */
  close(): void {
    this.#closed = true;
    this.#offThread?.close();
    this.#offThread = null;
  }
}
