/**
 * One chat turn as segments: the chat format's markup (special: true — special-token text there is
 * the model's control tokens) and each message's content (special: false — always plain text).
 *
 * With a template: render it with every message content replaced by a unique placeholder, split the
 * output on the placeholders, and put each content back in its place. The template never sees the
 * content there, so nothing a user writes can become markup. The same template rendered with the
 * real contents must give the same text (checked every turn); a template that changes contents
 * (`| trim`, `.strip()`) is matched with trimmed contents, and one that does anything else keeps the
 * contents as they were sent (still safe; its text then differs from the template's own output).
 */
import type { Template } from "@huggingface/jinja";
import type { TextSegment } from "../../runtime/types.ts";

export type ChatRole = "system" | "user" | "assistant";
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

const ROLE_LABEL: Record<ChatRole, string> = { system: "System", user: "User", assistant: "Assistant" };

/** The plain format of models without a template (docs/gateway.md). */
export function fallbackSegments(messages: readonly ChatMessage[], first: boolean): TextSegment[] {
  const out: TextSegment[] = [];
  let markup = first ? "" : "\n";
  for (const m of messages) {
    out.push({ text: `${markup}${ROLE_LABEL[m.role]}: `, special: true });
    out.push({ text: m.content, special: false });
    markup = "\n";
  }
  out.push({ text: `${markup}Assistant:`, special: true });
  return out;
}

/** Stand-in for message `i` in the placeholder render (no template or user writes this). */
const placeholder = (i: number) => `\u27e6sinkstream-content-${i}\u27e7`;
const PLACEHOLDER = /\u27e6sinkstream-content-(\d+)\u27e7/g;
/** Contents of the probe messages of a later turn (D5): the previous answer is `ASSISTANT_MARK`. */
const USER_MARK = "\u27e6sinkstream-user\u27e7";
const ASSISTANT_MARK = "\u27e6sinkstream-assistant\u27e7";

function render(template: Template, special: Record<string, string>, messages: ChatMessage[]): string {
  return template.render({
    ...special,
    messages,
    add_generation_prompt: true,
    bos_token: special.bos_token ?? "",
    eos_token: special.eos_token ?? "",
  });
}

/** Markup between placeholders, and the index of the message each placeholder stands for. */
function splitOnPlaceholders(text: string): { markup: string[]; refs: number[] } {
  const markup: string[] = [];
  const refs: number[] = [];
  let from = 0;
  for (const m of text.matchAll(PLACEHOLDER)) {
    markup.push(text.slice(from, m.index));
    refs.push(Number(m[1]));
    from = m.index + m[0].length;
  }
  markup.push(text.slice(from));
  return { markup, refs };
}

function assemble(markup: string[], refs: number[], contents: readonly string[]): TextSegment[] {
  const out: TextSegment[] = [];
  for (let i = 0; i < markup.length; i++) {
    if (markup[i] !== "") out.push({ text: markup[i], special: true });
    if (i < refs.length && contents[refs[i]] !== "") out.push({ text: contents[refs[i]], special: false });
  }
  return out;
}

const joined = (segments: readonly TextSegment[]) => segments.map((s) => s.text).join("");

/**
 * Segments of one turn with a chat template (throws what the template throws). A later turn is the
 * text after the previous answer (D5): what follows the assistant probe's placeholder.
 */
export function templateSegments(
  template: Template,
  special: Record<string, string>,
  messages: readonly ChatMessage[],
  first: boolean,
): TextSegment[] {
  let all: ChatMessage[] = [...messages];
  if (!first) {
    all = [{ role: "user", content: USER_MARK }, { role: "assistant", content: ASSISTANT_MARK }, ...messages];
  }
  let { markup, refs } = splitOnPlaceholders(
    render(template, special, all.map((m, i) => ({ role: m.role, content: placeholder(i) }))),
  );
  let real = render(template, special, all);
  if (!first) {
    const probe = refs.indexOf(1);
    const at = real.indexOf(ASSISTANT_MARK);
    if (probe < 0 || at < 0) return templateSegments(template, special, messages, true);
    markup = markup.slice(probe + 1);
    refs = refs.slice(probe + 1);
    real = real.slice(at + ASSISTANT_MARK.length);
  }
  // A template that rewrote a placeholder (e.g. `| upper`) transforms contents in a way we cannot follow.
  if (markup.some((m) => /sinkstream-content-/i.test(m))) {
    throw new Error("the template rewrites message contents");
  }
  const contents = all.map((m) => m.content);
  const exact = assemble(markup, refs, contents);
  if (joined(exact) === real) return exact;
  const trimmed = assemble(markup, refs, contents.map((c) => c.trim()));
  if (joined(trimmed) === real) return trimmed;
  return exact;
}
