/** Small byte helpers shared by the tokenizers and the detokenizer. */

/** One char per byte (U+0000..U+00FF): a cheap, exact map key for a byte string. */
export function bytesToBinary(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return s;
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** The byte of a SentencePiece byte-fallback piece "<0xXX>", else null. */
export function parseBytePiece(piece: string): number | null {
  const m = BYTE_PIECE.exec(piece);
  return m ? parseInt(m[1], 16) : null;
}

/** Concatenate byte arrays. */
export function concatBytes(chunks: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const c of chunks) total += c.length;
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** GPT-2 byte-level BPE: the printable character standing for each byte, and its inverse. */
export function byteLevelDecoder(): Map<string, number> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const map = new Map<string, number>();
  for (let i = 0; i < bs.length; i++) map.set(String.fromCharCode(cs[i]), bs[i]);
  return map;
}
