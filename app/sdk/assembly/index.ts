// Edge module SDK for AssemblyScript: typed bindings for the host functions of the module ABI
// (app/sdk/README.md). Import what you need; re-export `edge_alloc` from your entry file when
// your module takes input bytes.

import { edge_log, get_sensor, post_uplink } from './env';

// ---- Log levels and error codes -----------------------------------------------------------

export const LOG_DEBUG: i32 = 0;
export const LOG_INFO: i32 = 1;
export const LOG_WARN: i32 = 2;
export const LOG_ERROR: i32 = 3;

export const EDGE_OK: i32 = 0;
/** Bad pointer or length (outside memory, negative). */
export const EDGE_EINVAL: i32 = -1;
/** Not valid UTF-8. */
export const EDGE_EUTF8: i32 = -2;
/** Over the size limit. */
export const EDGE_ETOOBIG: i32 = -3;
/** Not allowed: sensor not whitelisted, capability not granted. */
export const EDGE_EDENIED: i32 = -4;
/** The host could not do it: sensor unreadable, uplink not configured. */
export const EDGE_EIO: i32 = -5;
/** Uplink payload is not JSON or fails the manifest's schema. */
export const EDGE_ESCHEMA: i32 = -6;
/** Rate or byte quota exceeded: try later. */
export const EDGE_EQUOTA: i32 = -7;

/** Host limits, in bytes. */
export const MAX_LOG_BYTES: i32 = 1024;
export const MAX_SENSOR_PATH_BYTES: i32 = 256;
export const MAX_SENSOR_BYTES: i32 = 4096;
export const MAX_UPLINK_BYTES: i32 = 16384;

/** The name of an error code, for messages: "EDGE_EIO", or "OK" for 0. */
export function errorName(code: i32): string {
  switch (code) {
    case EDGE_OK:
      return 'OK';
    case EDGE_EINVAL:
      return 'EDGE_EINVAL';
    case EDGE_EUTF8:
      return 'EDGE_EUTF8';
    case EDGE_ETOOBIG:
      return 'EDGE_ETOOBIG';
    case EDGE_EDENIED:
      return 'EDGE_EDENIED';
    case EDGE_EIO:
      return 'EDGE_EIO';
    case EDGE_ESCHEMA:
      return 'EDGE_ESCHEMA';
    case EDGE_EQUOTA:
      return 'EDGE_EQUOTA';
    default:
      return 'error ' + code.toString();
  }
}

// ---- UTF-8 --------------------------------------------------------------------------------

/** UTF-8 of a string; lone surrogates become U+FFFD, so the host always gets valid UTF-8. */
export function utf8(text: string): ArrayBuffer {
  return String.UTF8.encode(text, false, String.UTF8.ErrorMode.REPLACE);
}

/** The longest prefix of `len` bytes at `ptr` that fits in `max` bytes without cutting a character. */
export function utf8PrefixLength(ptr: usize, len: i32, max: i32): i32 {
  if (len <= max) return len;
  let end = max;
  // Step back over continuation bytes (10xxxxxx) to the start of the cut character.
  while (end > 0 && (load<u8>(ptr + <usize>end) & 0xc0) == 0x80) end--;
  return end;
}

// ---- edge_log -----------------------------------------------------------------------------

/** Logs UTF-8 bytes from memory; cut at a character boundary to MAX_LOG_BYTES. Returns 0 or an error code. */
export function logUtf8(level: i32, ptr: usize, len: i32): i32 {
  return edge_log(level, ptr, utf8PrefixLength(ptr, len, MAX_LOG_BYTES));
}

/** Logs a message (level LOG_DEBUG..LOG_ERROR), cut to MAX_LOG_BYTES. Returns 0 or an error code. */
export function log(level: i32, message: string): i32 {
  const bytes = utf8(message);
  return logUtf8(level, changetype<usize>(bytes), bytes.byteLength);
}

// ---- get_sensor ---------------------------------------------------------------------------

/** What readSensor got: the text, or the error code the host returned. */
export class SensorReading {
  constructor(
    /** 0, or a negative error code (EDGE_EDENIED, EDGE_EIO, ...). */
    public error: i32,
    /** The bytes read, decoded as UTF-8; empty on error. */
    public text: string,
  ) {}

  get ok(): bool {
    return this.error == EDGE_OK;
  }
}

/**
 * Reads a whitelisted sensor file (manifest `capabilities.sensors`), at most `capacity`
 * bytes (the host reads at most MAX_SENSOR_BYTES).
 */
export function readSensor(path: string, capacity: i32 = 256): SensorReading {
  const pathBytes = utf8(path);
  const out = new ArrayBuffer(min(max(capacity, 0), MAX_SENSOR_BYTES));
  const n = get_sensor(
    changetype<usize>(pathBytes),
    pathBytes.byteLength,
    changetype<usize>(out),
    out.byteLength,
  );
  if (n < 0) return new SensorReading(n, '');
  // Never trust a count past the buffer, even from the host.
  const length = min(n, out.byteLength);
  return new SensorReading(EDGE_OK, String.UTF8.decodeUnsafe(changetype<usize>(out), length));
}

// ---- post_uplink --------------------------------------------------------------------------

/**
 * Sends JSON text to the update server (manifest `capabilities.uplink`); the host checks it
 * against the manifest's schema. Returns 0 when accepted for sending, or an error code.
 */
export function postUplink(json: string): i32 {
  const bytes = utf8(json);
  return post_uplink(changetype<usize>(bytes), bytes.byteLength);
}

// ---- Input bytes: edge_alloc --------------------------------------------------------------

// The last input buffer stays referenced until the next one, so the garbage collector cannot
// free it between the host's edge_alloc and its call of fn(ptr, len).
let inputBuffer: ArrayBuffer | null = null;

/**
 * The host calls edge_alloc(len), copies the call's input bytes there, then fn(ptr, len).
 * Re-export it from your entry file: `export { edge_alloc } from '<path to sdk>/assembly/index';`
 */
export function edge_alloc(len: i32): usize {
  if (len < 0) return 0;
  const buffer = new ArrayBuffer(len);
  inputBuffer = buffer;
  return changetype<usize>(buffer);
}

/** The input bytes at (ptr, len) as a string (UTF-8; invalid sequences become U+FFFD). */
export function inputText(ptr: usize, len: i32): string {
  return String.UTF8.decodeUnsafe(ptr, max(len, 0));
}

// ---- abort --------------------------------------------------------------------------------

// Scratch space for the abort message: abort may come from an out-of-memory, so it allocates nothing.
const ABORT_BUFFER_BYTES: i32 = 256;
const abortBuffer = memory.data(ABORT_BUFFER_BYTES);
let abortLength: i32 = 0;

function abortByte(byte: u32): void {
  store<u8>(abortBuffer + <usize>abortLength, byte);
  abortLength++;
}

function abortAppend(text: string | null): void {
  if (text === null) return;
  const chars = text.length;
  for (let i = 0; i < chars && abortLength < ABORT_BUFFER_BYTES; i++) {
    const c = text.charCodeAt(i);
    // ASCII only, so that any cut is valid UTF-8.
    abortByte(c < 0x20 || c > 0x7e ? 0x3f : c);
  }
}

function abortAppendNumber(value: u32): void {
  let divisor: u32 = 1;
  while (value / divisor >= 10) divisor *= 10;
  for (; divisor > 0 && abortLength < ABORT_BUFFER_BYTES; divisor /= 10) {
    abortByte(0x30 + ((value / divisor) % 10));
  }
}

/**
 * Replaces AssemblyScript's `env.abort` import (compile with `--use abort=<this function>`):
 * logs "abort: <message> at <file>:<line>:<column>" at LOG_ERROR, then traps.
 */
export function edgeAbort(
  message: string | null,
  fileName: string | null,
  line: u32,
  column: u32,
): void {
  abortLength = 0;
  abortAppend('abort: ');
  abortAppend(message);
  abortAppend(' at ');
  abortAppend(fileName);
  abortAppend(':');
  abortAppendNumber(line);
  abortAppend(':');
  abortAppendNumber(column);
  edge_log(LOG_ERROR, abortBuffer, abortLength);
  unreachable();
}

// ---- JSON ---------------------------------------------------------------------------------

const HEX_DIGITS = '0123456789abcdef';

/** A JSON string literal: quoted, with quotes, backslashes and control characters escaped. */
export function jsonString(text: string): string {
  let out = '"';
  let start = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += text.substring(start, i);
    start = i + 1;
    if (c == 0x22) out += '\\"';
    else if (c == 0x5c) out += '\\\\';
    else if (c == 0x0a) out += '\\n';
    else if (c == 0x0d) out += '\\r';
    else if (c == 0x09) out += '\\t';
    else out += '\\u00' + HEX_DIGITS.charAt(c >> 4) + HEX_DIGITS.charAt(c & 0xf);
  }
  return out + text.substring(start) + '"';
}

/** Builds one flat JSON object: `new JsonObject().string('a', 'x').integer('b', 1).toString()`. */
export class JsonObject {
  private text: string = '';

  private key(name: string): void {
    this.text += (this.text.length == 0 ? '' : ',') + jsonString(name) + ':';
  }

  string(name: string, value: string): JsonObject {
    this.key(name);
    this.text += jsonString(value);
    return this;
  }

  integer(name: string, value: i64): JsonObject {
    this.key(name);
    this.text += value.toString();
    return this;
  }

  boolean(name: string, value: bool): JsonObject {
    this.key(name);
    this.text += value ? 'true' : 'false';
    return this;
  }

  /** A value that is JSON text already (a nested object or array). */
  raw(name: string, json: string): JsonObject {
    this.key(name);
    this.text += json;
    return this;
  }

  toString(): string {
    return '{' + this.text + '}';
  }
}

// ---- Parsing sensor values ----------------------------------------------------------------

/** A parsed integer, or ok == false. */
export class ParsedInteger {
  constructor(
    public ok: bool,
    public value: i64,
  ) {}
}

function isSpace(c: i32): bool {
  return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09;
}

/**
 * Parses a decimal integer as sysfs prints it ("42123\n", "-5"): optional minus sign, 1 to 18
 * digits, surrounding whitespace allowed, nothing else.
 */
export function parseInteger(text: string): ParsedInteger {
  let start = 0;
  let end = text.length;
  while (start < end && isSpace(text.charCodeAt(start))) start++;
  while (end > start && isSpace(text.charCodeAt(end - 1))) end--;
  const negative = start < end && text.charCodeAt(start) == 0x2d;
  if (negative) start++;
  if (start == end || end - start > 18) return new ParsedInteger(false, 0);
  let value: i64 = 0;
  for (let i = start; i < end; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return new ParsedInteger(false, 0);
    value = value * 10 + digit;
  }
  return new ParsedInteger(true, negative ? -value : value);
}
