/**
 * What a WebAssembly binary declares, read from its sections before it is instantiated: the
 * JS API does not tell memory and table limits, nor import and export signatures.
 */

export type ValueType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';

export interface FunctionType {
  params: ValueType[];
  results: ValueType[];
}

export interface Limits {
  min: number;
  max: number | undefined;
  shared: boolean;
  is64: boolean;
}

export type ImportKind = 'function' | 'table' | 'memory' | 'global' | 'tag';

export interface WasmImport {
  module: string;
  name: string;
  kind: ImportKind;
  /** For a function import. */
  type?: FunctionType;
}

export interface WasmInspection {
  imports: WasmImport[];
  /** Memories the module defines itself (imported ones are in `imports`). */
  memories: Limits[];
  tables: Limits[];
  /** Exported functions by name, with their signatures. */
  functions: Map<string, FunctionType>;
  /** Every export by name and kind. */
  exports: Map<string, ImportKind>;
}

export class WasmFormatError extends Error {
  override name = 'WasmFormatError';
}

const VALUE_TYPES: Record<number, ValueType> = {
  0x7f: 'i32',
  0x7e: 'i64',
  0x7d: 'f32',
  0x7c: 'f64',
  0x7b: 'v128',
  0x70: 'funcref',
  0x6f: 'externref',
};
const KINDS: ImportKind[] = ['function', 'table', 'memory', 'global', 'tag'];

class Reader {
  offset = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private end = bytes.length,
  ) {}

  get done(): boolean {
    return this.offset >= this.end;
  }

  byte(): number {
    if (this.offset >= this.end) throw new WasmFormatError('unexpected end of section');
    return this.bytes[this.offset++]!;
  }

  /** An unsigned LEB128 of up to 64 bits, as a number (exact up to 2^53). */
  u(): number {
    let result = 0;
    let scale = 1;
    for (let shift = 0; shift < 70; shift += 7) {
      const byte = this.byte();
      result += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new WasmFormatError('LEB128 too long');
  }

  name(): string {
    const length = this.u();
    if (this.offset + length > this.end) throw new WasmFormatError('name past the section');
    const text = new TextDecoder('utf-8', { fatal: false }).decode(
      this.bytes.subarray(this.offset, this.offset + length),
    );
    this.offset += length;
    return text;
  }

  valueType(): ValueType {
    const code = this.byte();
    const type = VALUE_TYPES[code];
    if (!type) throw new WasmFormatError(`unsupported value type 0x${code.toString(16)}`);
    return type;
  }

  limits(): Limits {
    const flags = this.byte();
    if (flags > 0x07) throw new WasmFormatError(`unsupported limits flags 0x${flags.toString(16)}`);
    const min = this.u();
    const max = flags & 0x01 ? this.u() : undefined;
    return { min, max, shared: (flags & 0x02) !== 0, is64: (flags & 0x04) !== 0 };
  }

  skipTo(offset: number): void {
    this.offset = offset;
  }
}

/** Reads the sections the sandbox checks; throws WasmFormatError on what it cannot read. */
export function inspectWasm(bytes: Uint8Array): WasmInspection {
  if (
    bytes.length < 8 ||
    bytes[0] !== 0x00 ||
    bytes[1] !== 0x61 ||
    bytes[2] !== 0x73 ||
    bytes[3] !== 0x6d
  ) {
    throw new WasmFormatError('not a WebAssembly binary (no \\0asm header)');
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new WasmFormatError('unsupported WebAssembly version (a component?)');
  }
  const types: FunctionType[] = [];
  const functionTypes: number[] = [];
  const result: WasmInspection = {
    imports: [],
    memories: [],
    tables: [],
    functions: new Map(),
    exports: new Map(),
  };
  const exportedFunctions: Array<[string, number]> = [];
  const top = new Reader(bytes);
  top.skipTo(8);
  while (!top.done) {
    const id = top.byte();
    const size = top.u();
    const start = top.offset;
    const end = start + size;
    if (end > bytes.length) throw new WasmFormatError(`section ${id} runs past the end`);
    const r = new Reader(bytes, end);
    r.skipTo(start);
    switch (id) {
      case 1:
        for (let count = r.u(); count > 0; count--) {
          const form = r.byte();
          if (form !== 0x60)
            throw new WasmFormatError(`unsupported type form 0x${form.toString(16)}`);
          const params = Array.from({ length: r.u() }, () => r.valueType());
          const results = Array.from({ length: r.u() }, () => r.valueType());
          types.push({ params, results });
        }
        break;
      case 2:
        for (let count = r.u(); count > 0; count--) {
          const module = r.name();
          const name = r.name();
          const kind = KINDS[r.byte()];
          if (!kind) throw new WasmFormatError(`unknown import kind of ${module}.${name}`);
          const entry: WasmImport = { module, name, kind };
          if (kind === 'function') {
            const type = types[r.u()];
            if (!type) throw new WasmFormatError(`import ${module}.${name}: no such type`);
            entry.type = type;
            functionTypes.push(-1);
          } else if (kind === 'table') {
            r.valueType();
            r.limits();
          } else if (kind === 'memory') {
            r.limits();
          } else if (kind === 'global') {
            r.valueType();
            r.byte();
          } else {
            r.byte();
            r.u();
          }
          result.imports.push(entry);
        }
        break;
      case 3:
        for (let count = r.u(); count > 0; count--) functionTypes.push(r.u());
        break;
      case 4:
        for (let count = r.u(); count > 0; count--) {
          r.valueType();
          result.tables.push(r.limits());
        }
        break;
      case 5:
        for (let count = r.u(); count > 0; count--) result.memories.push(r.limits());
        break;
      case 7:
        for (let count = r.u(); count > 0; count--) {
          const name = r.name();
          const kind = KINDS[r.byte()];
          const index = r.u();
          if (!kind) throw new WasmFormatError(`unknown export kind of ${name}`);
          result.exports.set(name, kind);
          if (kind === 'function') exportedFunctions.push([name, index]);
        }
        break;
    }
    top.skipTo(end);
  }
  const importedFunctions = result.imports.filter((entry) => entry.kind === 'function');
  for (const [name, index] of exportedFunctions) {
    const type =
      index < importedFunctions.length
        ? importedFunctions[index]!.type
        : types[functionTypes[index] ?? -1];
    if (type) result.functions.set(name, type);
  }
  return result;
}
