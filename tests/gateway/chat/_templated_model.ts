/**
 * Chat-template test material: the stories260K HF folder (which has no template) copied to a temp dir
 * with a `chat_template` added to its tokenizer_config.json.
 */
import { fileURLToPath } from "node:url";

const HF_DIR = fileURLToPath(new URL("../../../../shared/models/stories260K-hf/", import.meta.url));

// Llama-2 chat layout: <s>[INST] <<SYS>>..<</SYS>> user [/INST] answer </s><s>[INST] next [/INST]
export const LLAMA2_STYLE =
  "{% if messages[0]['role'] == 'system' %}{% set sys = '<<SYS>>\\n' + messages[0]['content'] + " +
  "'\\n<</SYS>>\\n\\n' %}{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}" +
  "{% endif %}{% for m in msgs %}{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + (sys if loop.first " +
  "else '') + m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}" +
  "{% endfor %}";

// Mistral-like, trimming every content (as many templates do with `| trim` or `.strip()`).
export const TRIMMING_STYLE = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}" +
  "{{ '[INST] ' + m['content'] | trim + ' [/INST]' }}{% else %}{{ ' ' + m['content'] | trim + eos_token }}" +
  "{% endif %}{% endfor %}";

/** A temp copy of stories260K-hf with `template`; `weights: false` copies the tokenizer files only. */
export async function templatedModelDir(template = LLAMA2_STYLE, weights = true): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "sinkstream-tpl-" });
  for await (const e of Deno.readDir(HF_DIR)) {
    if (e.isFile && (weights || e.name.startsWith("tokenizer"))) {
      await Deno.copyFile(`${HF_DIR}/${e.name}`, `${dir}/${e.name}`);
    }
  }
  const cfgPath = `${dir}/tokenizer_config.json`;
  await Deno.chmod(cfgPath, 0o644);
  const cfg = JSON.parse(await Deno.readTextFile(cfgPath));
  cfg.chat_template = template;
  await Deno.writeTextFile(cfgPath, JSON.stringify(cfg, null, 2));
  return dir;
}
