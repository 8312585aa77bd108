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

  #render(messages: ChatMessage[], addGenerationPrompt: boolean): string {
    const special = this.tokenizer.specialTokens;
    return this.template!.render({
      ...special,
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: special.bos_token ?? "",
      eos_token: special.eos_token ?? "",
    });
  }

  /** Text of one turn: `first` = nothing is in the cache yet. */
  renderTurn(messages: ChatMessage[], first: boolean): string {
    if (this.template) {
      try {
        if (first) return this.#render(messages, true);
        const probe: ChatMessage[] = [
          { role: "user", content: USER_MARK },
          { role: "assistant", content: ASSISTANT_MARK },
          ...messages,
        ];
        const text = this.#render(probe, true);
        const at = text.indexOf(ASSISTANT_MARK);
        if (at >= 0) return text.slice(at + ASSISTANT_MARK.length);
        return this.#render(messages, true);
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
