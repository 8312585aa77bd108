/**
 * The turn encoder as it was before special-token text in content became plain text (commit 5eb9aaa):
 * render the turn with the real contents, encode the whole text (special-token text anywhere becomes
 * its id). Ordinary turns must still encode to exactly these ids.
 */
import { Template } from "@huggingface/jinja";
import type { Tokenizer } from "../../../runtime/types.ts";
import type { ChatMessage } from "../../../gateway/chat/template.ts";

const USER_MARK = "\u27e6sinkstream-user\u27e7";
const ASSISTANT_MARK = "\u27e6sinkstream-assistant\u27e7";
const ROLE_LABEL = { system: "System", user: "User", assistant: "Assistant" };

export function legacyEncodeTurn(tokenizer: Tokenizer, messages: ChatMessage[], first: boolean): number[] {
  const template = tokenizer.chatTemplate ? new Template(tokenizer.chatTemplate) : null;
  const special = tokenizer.specialTokens;
  const render = (msgs: ChatMessage[]) =>
    template!.render({
      ...special,
      messages: msgs,
      add_generation_prompt: true,
      bos_token: special.bos_token ?? "",
      eos_token: special.eos_token ?? "",
    });
  let text: string;
  if (template) {
    if (first) text = render(messages);
    else {
      const probe = render([{ role: "user", content: USER_MARK }, {
        role: "assistant",
        content: ASSISTANT_MARK,
      }, ...messages]);
      text = probe.slice(probe.indexOf(ASSISTANT_MARK) + ASSISTANT_MARK.length);
    }
  } else {
    text = `${first ? "" : "\n"}${
      messages.map((m) => `${ROLE_LABEL[m.role]}: ${m.content}\n`).join("")
    }Assistant:`;
  }
  const bosText = special.bos_token;
  const textHasBos = !!template && !!bosText && text.startsWith(bosText);
  const ids = tokenizer.encode(textHasBos ? text.slice(bosText!.length) : text, { bos: false });
  return first && tokenizer.bosId >= 0 ? [tokenizer.bosId, ...ids] : ids;
}
