/** GPT-2's byte-level alphabet: the character that stands for each byte (xgrammar's `byte_level` decodes it back). */
export function byteLevelAlphabet(): string[] {
  const chars: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars[b] = String.fromCodePoint(printable ? b : next++);
  }
  return chars;
}
