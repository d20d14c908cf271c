// CBOR (RFC 8949) for the docs page: the part of it the kernel speaks, both ways.
//
// encode(value): null, true/false, numbers (whole ones as integers, others as
//   64-bit floats), BigInt (a bignum past 64 bits), strings, arrays, Maps and
//   plain objects. Anything else throws a CborError.
// decode(bytes): integers (BigInt past 2**53), floats, text, arrays, maps (as
//   Maps), true/false/null, tags 0 and 1 (date/time) and 4 (decimal fraction)
//   kept as Tagged, bignums (tags 2, 3) as BigInt; definite or indefinite
//   lengths. Anything else (byte strings outside a bignum, other tags, other
//   simple values) throws a CborError naming the item and its byte.
// describe(value): a decoded value in RFC 8949 diagnostic notation, indented,
//   with a /comment/ giving the date or the number a tag 1 or 4 stands for.
"use strict";

window.KernKoaCbor = (function () {
  const MAX_DEPTH = 512;
  const INDEFINITE = -1;
  const BREAK = 0xff;
  const TWO_64 = 1n << 64n;
  // The head's low five bits for an argument of 1, 2, 4 or 8 bytes.
  const ARGUMENT_INFO = { 1: 24, 2: 25, 4: 26, 8: 27 };
  const utf8 = new TextEncoder();
  const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

  class CborError extends Error {}

  // What is wrong with the item at byte `at` of an answer.
  function refuse(what, at) { return new CborError(what + " at byte " + at); }

  // A tag the page shows as it came (0, 1, 4), with what it stands for.
  class Tagged {
    constructor(tag, value) { this.tag = tag; this.value = value; }
  }

  // A float, so that 2.0 is shown apart from the integer 2.
  class Float {
    constructor(value) { this.value = value; }
  }

  // ---- encoding ----

  // The head of an item: its major type and argument n (a BigInt under 2**64).
  function head(out, major, n) {
    const size = n < 24n ? 0 : n < 0x100n ? 1 : n < 0x10000n ? 2 : n < 0x100000000n ? 4 : 8;
    out.push(major << 5 | (size ? ARGUMENT_INFO[size] : Number(n)));
    for (let i = size - 1; i >= 0; i--) out.push(Number((n >> BigInt(8 * i)) & 0xffn));
  }

  function pushAll(out, bytes) {
    for (const byte of bytes) out.push(byte);  // no spread: a long text would overflow the stack
  }

  function integer(out, big) {
    const major = big < 0n ? 1 : 0;
    const magnitude = big < 0n ? -1n - big : big;
    if (magnitude < TWO_64) return head(out, major, magnitude);
    let hex = magnitude.toString(16);
    if (hex.length % 2) hex = "0" + hex;
    out.push(0xc2 + major);  // tag 2 (or 3, negative) on the magnitude's bytes
    head(out, 2, BigInt(hex.length / 2));
    for (let i = 0; i < hex.length; i += 2) out.push(parseInt(hex.slice(i, i + 2), 16));
  }

  function float(out, value) {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, value);
    out.push(0xfb);
    pushAll(out, new Uint8Array(view.buffer));
  }

  function write(out, value, depth) {
    if (depth > MAX_DEPTH) throw new CborError("nested deeper than " + MAX_DEPTH);
    if (value === null) out.push(0xf6);
    else if (value === true) out.push(0xf5);
    else if (value === false) out.push(0xf4);
    else if (typeof value === "bigint") integer(out, value);
    else if (typeof value === "number") {
      if (Number.isSafeInteger(value) && !Object.is(value, -0)) integer(out, BigInt(value));
      else float(out, value);
    } else if (value instanceof Float) float(out, value.value);
    else if (typeof value === "string") {
      const bytes = utf8.encode(value);
      head(out, 3, BigInt(bytes.length));
      pushAll(out, bytes);
    } else if (Array.isArray(value)) {
      head(out, 4, BigInt(value.length));
      for (const item of value) write(out, item, depth + 1);
    } else if (value instanceof Map || Object.getPrototypeOf(value) === Object.prototype) {
      const entries = value instanceof Map ? [...value] : Object.entries(value);
      head(out, 5, BigInt(entries.length));
      for (const [key, item] of entries) {
        write(out, key, depth + 1);
        write(out, item, depth + 1);
      }
    } else {
      throw new CborError("cannot encode " + Object.prototype.toString.call(value));
    }
  }

  function encode(value) {
    const out = [];
    write(out, value, 0);
    return Uint8Array.from(out);
  }

  // ---- decoding ----

  function hexByte(byte) { return "0x" + byte.toString(16).padStart(2, "0"); }

  class Reader {
    constructor(bytes) {
      this.bytes = bytes;
      this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      this.pos = 0;
    }

    // The offset of the next n bytes, which are then passed.
    take(n) {
      if (n > this.bytes.length - this.pos) {
        throw new CborError("truncated: " + n + " bytes wanted at byte " + this.pos + ", "
                            + (this.bytes.length - this.pos) + " left");
      }
      const at = this.pos;
      this.pos += n;
      return at;
    }

    // The argument of a head: a Number, a BigInt past 2**53, or INDEFINITE.
    argument(info, at) {
      if (info < 24) return info;
      if (info === 24) return this.bytes[this.take(1)];
      if (info === 25) return this.view.getUint16(this.take(2));
      if (info === 26) return this.view.getUint32(this.take(4));
      if (info === 27) {
        const big = this.view.getBigUint64(this.take(8));
        return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      }
      if (info === 31) return INDEFINITE;
      throw refuse("reserved header " + hexByte(this.bytes[at]), at);
    }

    // A length: one the bytes left could hold (each item takes a byte at least).
    length(info, at) {
      const n = this.argument(info, at);
      if (n !== INDEFINITE && (typeof n === "bigint" || n > this.bytes.length - this.pos)) {
        throw new CborError("truncated: item at byte " + at + " declares " + n
                            + " and the answer is shorter");
      }
      return n;
    }

    // Whether an indefinite-length item ends here (its break is then passed).
    atBreak() {
      if (this.pos >= this.bytes.length) {
        throw new CborError("truncated: an indefinite-length item has no break");
      }
      if (this.bytes[this.pos] !== BREAK) return false;
      this.pos += 1;
      return true;
    }

    // The bytes of a string of major type `major` whose head was at `at`.
    string(major, info, at) {
      const n = this.length(info, at);
      if (n !== INDEFINITE) return this.bytes.subarray(this.take(n), this.pos);
      const chunks = [];
      while (!this.atBreak()) {
        const chunkAt = this.take(1);
        const chunkHead = this.bytes[chunkAt];
        if (chunkHead >> 5 !== major || (chunkHead & 31) === 31) {
          throw refuse("a chunk of another type", chunkAt);
        }
        chunks.push(this.string(major, chunkHead & 31, chunkAt));
      }
      const whole = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
      let offset = 0;
      for (const chunk of chunks) { whole.set(chunk, offset); offset += chunk.length; }
      return whole;
    }

    text(info, at) {
      try {
        return strictUtf8.decode(this.string(3, info, at));
      } catch (error) {
        if (error instanceof CborError) throw error;
        throw refuse("text that is not UTF-8", at);
      }
    }

    // A bignum's magnitude: the byte string after tag 2 or 3.
    bignum(tag, at) {
      const stringAt = this.take(1);
      const stringHead = this.bytes[stringAt];
      if (stringHead >> 5 !== 2) throw refuse("tag " + tag + " on an item not a byte string", at);
      const bytes = this.string(2, stringHead & 31, stringAt);
      let hex = "0x0";
      for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
      const magnitude = BigInt(hex);
      return tag === 2 ? magnitude : -1n - magnitude;
    }

    item(depth) {
      if (depth > MAX_DEPTH) throw refuse("nested deeper than " + MAX_DEPTH, this.pos);
      const at = this.take(1);
      const initial = this.bytes[at];
      const major = initial >> 5;
      const info = initial & 31;
      if (initial === BREAK) throw refuse("a break outside an indefinite-length item", at);
      switch (major) {
        case 0:
        case 1: {
          const n = this.argument(info, at);
          if (n === INDEFINITE) throw refuse("an integer of indefinite length", at);
          if (major === 0) return n;
          return typeof n === "bigint" || n >= Number.MAX_SAFE_INTEGER ? -1n - BigInt(n) : -1 - n;
        }
        case 2:
          throw refuse("a byte string (the kernel sends bytes only as a bignum)", at);
        case 3:
          return this.text(info, at);
        case 4: {
          const n = this.length(info, at);
          const items = [];
          if (n === INDEFINITE) while (!this.atBreak()) items.push(this.item(depth + 1));
          else for (let i = 0; i < n; i++) items.push(this.item(depth + 1));
          return items;
        }
        case 5: {
          const n = this.length(info, at);
          const map = new Map();
          const pair = () => {
            const key = this.item(depth + 1);
            map.set(key, this.item(depth + 1));
          };
          if (n === INDEFINITE) while (!this.atBreak()) pair();
          else for (let i = 0; i < n; i++) pair();
          return map;
        }
        case 6:
          return this.tagged(this.argument(info, at), at, depth);
        default:
          return this.simple(info, at);
      }
    }

    tagged(tag, at, depth) {
      if (tag === 2 || tag === 3) return this.bignum(tag, at);
      if (tag !== 0 && tag !== 1 && tag !== 4) {
        throw refuse("tag " + tag + " (the kernel sends tags 0 to 4 only)", at);
      }
      const value = this.item(depth + 1);
      const isInteger = (v) => typeof v === "bigint" || Number.isInteger(v);
      const fits = tag === 0 ? typeof value === "string"
        : tag === 1 ? isInteger(value) || value instanceof Float
          : Array.isArray(value) && value.length === 2 && value.every(isInteger);
      if (!fits) throw refuse("tag " + tag + " on an item it does not apply to", at);
      return new Tagged(tag, value);
    }

    simple(info, at) {
      if (info === 20) return false;
      if (info === 21) return true;
      if (info === 22) return null;
      if (info === 25) return new Float(halfFloat(this.view.getUint16(this.take(2))));
      if (info === 26) return new Float(this.view.getFloat32(this.take(4)));
      if (info === 27) return new Float(this.view.getFloat64(this.take(8)));
      const value = info === 24 ? this.bytes[this.take(1)] : info;
      if (info >= 28) throw refuse("reserved header " + hexByte(this.bytes[at]), at);
      throw refuse("simple value " + value + " (the kernel sends true, false and null only)", at);
    }
  }

  function halfFloat(bits) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const fraction = bits & 0x3ff;
    if (exponent === 0) return sign * fraction * 2 ** -24;
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }

  function decode(bytes) {
    const reader = new Reader(bytes);
    const value = reader.item(0);
    if (reader.pos !== bytes.length) {
      throw refuse((bytes.length - reader.pos) + " bytes after the item, from", reader.pos);
    }
    return value;
  }

  // ---- showing ----

  function floatText(x) {
    if (Number.isNaN(x)) return "NaN";
    if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
    if (Object.is(x, -0)) return "-0.0";
    const text = String(x);
    return /[.e]/.test(text) ? text : text + ".0";
  }

  // The exact decimal a tag 4 [exponent, mantissa] stands for.
  function decimalText(exponent, mantissa) {
    const e = Number(exponent);
    if (!Number.isSafeInteger(e) || Math.abs(e) > 1000) return mantissa + "e" + e;
    let digits = BigInt(mantissa);
    const sign = digits < 0n ? "-" : "";
    if (digits < 0n) digits = -digits;
    const text = digits.toString();
    if (e >= 0) return sign + text + "0".repeat(e);
    const padded = text.padStart(1 - e, "0");
    return sign + padded.slice(0, e) + "." + padded.slice(e);
  }

  function comment(tagged) {
    if (tagged.tag === 1) {
      const value = tagged.value instanceof Float ? tagged.value.value : Number(tagged.value);
      const date = new Date(value * 1000);
      return Number.isNaN(date.getTime()) ? "" : " /" + date.toISOString() + "/";
    }
    if (tagged.tag === 4) return " /" + decimalText(tagged.value[0], tagged.value[1]) + "/";
    return "";
  }

  function isContainer(value) { return Array.isArray(value) || value instanceof Map; }

  function describe(value, indent = "") {
    if (value === null) return "null";
    if (typeof value === "boolean" || typeof value === "bigint" || typeof value === "number") {
      return String(value);
    }
    if (typeof value === "string") return JSON.stringify(value);
    if (value instanceof Float) return floatText(value.value);
    if (value instanceof Tagged) {
      return value.tag + "(" + describe(value.value, indent) + ")" + comment(value);
    }
    const inner = indent + "  ";
    const [open, close, parts] = Array.isArray(value)
      ? ["[", "]", value.map((item) => describe(item, inner))]
      : ["{", "}", [...value].map(([k, v]) => describe(k, inner) + ": " + describe(v, inner))];
    if (!parts.length) return open + close;
    const children = Array.isArray(value) ? value : [...value.values()];
    const flat = open + parts.join(", ") + close;
    if (!children.some(isContainer) && flat.length <= 72) return flat;
    return open + "\n" + inner + parts.join(",\n" + inner) + "\n" + indent + close;
  }

  return { encode, decode, describe, CborError, Tagged, Float };
})();
