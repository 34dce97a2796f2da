import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';

/**
 * A small reader of BitBake metadata: the assignments a layer's recipes and conf files use
 * (=, ?=, ??=, :=, +=, =+, .=, =., :append/:prepend/:remove with override conditions, flags,
 * line continuations, ${VAR} expansion). Function bodies are skipped; ${@python} stays as text.
 */

export type AssignOp = '=' | '?=' | '??=' | ':=' | '+=' | '=+' | '.=' | '=.';

export interface Assignment {
  name: string;
  flag?: string;
  op: AssignOp;
  value: string;
  line: number;
}

export interface ParsedMetadata {
  assignments: Assignment[];
  inherits: string[];
  /** Names of the shell and python functions defined (bodies are not read). */
  functions: string[];
}

const ASSIGNMENT =
  /^(?:export\s+)?([A-Za-z0-9_${}\-+.:/~%]+?)(?:\[([A-Za-z0-9_\-.]+)\])?\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*(["'])(.*)\4\s*$/s;
const FUNCTION_START = /^(?:fakeroot\s+)?(?:python\s*)?([A-Za-z0-9_${}\-+.:]*)\s*\(\)\s*\{\s*$/;

/** Parses BitBake metadata text (a .bb, .bbappend, .conf or .inc file). */
export function parseMetadata(text: string): ParsedMetadata {
  const lines = text.split('\n');
  const parsed: ParsedMetadata = { assignments: [], inherits: [], functions: [] };
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i]!;
    const fn = FUNCTION_START.exec(line);
    if (fn) {
      parsed.functions.push(fn[1] || '__anonymous');
      while (i < lines.length && lines[i] !== '}') i++;
      if (i >= lines.length) throw new Error(`line ${start + 1}: function never closed`);
      continue;
    }
    // A trailing backslash continues the line (inside a quoted value too).
    while (line.endsWith('\\') && i + 1 < lines.length) {
      line = `${line.slice(0, -1)}${lines[++i]!}`;
    }
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const directive =
      /^(inherit|require|include|addtask|deltask|EXPORT_FUNCTIONS|unset)\s+(.*)$/.exec(trimmed);
    if (directive) {
      if (directive[1] === 'inherit') parsed.inherits.push(...directive[2]!.split(/\s+/));
      continue;
    }
    if (/^export\s+[A-Za-z0-9_]+$/.test(trimmed)) continue;
    const match = ASSIGNMENT.exec(trimmed);
    if (!match) throw new Error(`line ${start + 1}: not an assignment BitBake knows: ${trimmed}`);
    const [, name, flag, op, , value] = match;
    parsed.assignments.push({
      name: name!,
      ...(flag ? { flag } : {}),
      op: op as AssignOp,
      value: value!,
      line: start + 1,
    });
  }
  return parsed;
}

const OPERATIONS = new Set(['append', 'prepend', 'remove']);

interface Operation {
  kind: 'append' | 'prepend' | 'remove';
  value: string;
}

/** Variables after a file's assignments, read as BitBake would for the given overrides. */
export class Datastore {
  readonly #values = new Map<string, string>();
  readonly #weakDefaults = new Map<string, string>();
  readonly #operations = new Map<string, Operation[]>();
  readonly #flags = new Map<string, Map<string, string>>();
  readonly inherits: string[] = [];

  /** `overrides`: the active OVERRIDES, weakest first (e.g. ['aarch64', 'rpi', 'raspberrypi4-64']). */
  constructor(
    initial: Record<string, string> = {},
    readonly overrides: readonly string[] = [],
  ) {
    for (const [name, value] of Object.entries(initial)) this.#values.set(name, value);
  }

  /** A copy to read a further file into (a recipe on top of layer.conf). */
  clone(): Datastore {
    const copy = new Datastore({}, this.overrides);
    for (const [k, v] of this.#values) copy.#values.set(k, v);
    for (const [k, v] of this.#weakDefaults) copy.#weakDefaults.set(k, v);
    for (const [k, v] of this.#operations) copy.#operations.set(k, [...v]);
    for (const [k, v] of this.#flags) copy.#flags.set(k, new Map(v));
    copy.inherits.push(...this.inherits);
    return copy;
  }

  apply(parsed: ParsedMetadata): this {
    this.inherits.push(...parsed.inherits);
    for (const assignment of parsed.assignments) this.#assign(assignment);
    return this;
  }

  #assign({ name: rawName, flag, op, value }: Assignment): void {
    const parts = this.expand(rawName).split(':');
    const opAt = parts.findIndex((part, index) => index > 0 && OPERATIONS.has(part));
    if (opAt > 0) {
      const conditions = parts.slice(opAt + 1);
      if (!conditions.every((condition) => this.overrides.includes(condition))) return;
      const name = parts.slice(0, opAt).join(':');
      const list = this.#operations.get(name) ?? [];
      const stored = op === ':=' ? this.expand(value) : value;
      list.push({ kind: parts[opAt] as Operation['kind'], value: stored });
      this.#operations.set(name, list);
      return;
    }
    const name = parts.join(':');
    if (flag) {
      const flags = this.#flags.get(name) ?? new Map<string, string>();
      flags.set(
        flag,
        combine(flags.get(flag), op, value, (v) => this.expand(v)),
      );
      this.#flags.set(name, flags);
      return;
    }
    if (op === '??=') {
      if (!this.#weakDefaults.has(name)) this.#weakDefaults.set(name, value);
      return;
    }
    if (op === '?=') {
      if (!this.#values.has(name)) this.#values.set(name, value);
      return;
    }
    const current = this.#values.get(name) ?? this.#weakDefaults.get(name);
    this.#values.set(
      name,
      combine(current, op, value, (v) => this.expand(v)),
    );
  }

  /** The raw value with overrides and :append/:prepend/:remove applied, not expanded. */
  raw(name: string): string | undefined {
    let value = this.#values.get(name) ?? this.#weakDefaults.get(name);
    for (const override of this.overrides) {
      const overridden = this.#values.get(`${name}:${override}`);
      if (overridden !== undefined) value = overridden;
    }
    const operations = this.#operations.get(name) ?? [];
    if (value === undefined && operations.length === 0) return undefined;
    value ??= '';
    for (const operation of operations) {
      if (operation.kind === 'append') value += operation.value;
      else if (operation.kind === 'prepend') value = operation.value + value;
    }
    const removed = operations
      .filter((operation) => operation.kind === 'remove')
      .flatMap((operation) => this.expand(operation.value).split(/\s+/))
      .filter(Boolean);
    if (removed.length > 0) {
      value = this.expand(value)
        .split(/\s+/)
        .filter((word) => word && !removed.includes(word))
        .join(' ');
    }
    return value;
  }

  get(name: string): string | undefined {
    const value = this.raw(name);
    return value === undefined ? undefined : this.expand(value);
  }

  /** The expanded value split into words (SRC_URI, LIC_FILES_CHKSUM, IMAGE_BOOT_FILES...). */
  words(name: string): string[] {
    return (this.get(name) ?? '').split(/\s+/).filter(Boolean);
  }

  flag(name: string, flag: string): string | undefined {
    const value = this.#flags.get(name)?.get(flag);
    return value === undefined ? undefined : this.expand(value);
  }

  /** Expands ${VAR} references; unknown variables and ${@...} stay as they are. */
  expand(text: string, depth = 0): string {
    if (depth > 20) throw new Error(`variable expansion too deep in: ${text}`);
    const expanded = text.replace(/\$\{([A-Za-z0-9_\-+.:/~]+)\}/g, (whole, name: string) => {
      const value = this.raw(name);
      return value === undefined ? whole : this.expand(value, depth + 1);
    });
    return expanded === text ? text : this.expand(expanded, depth + 1);
  }
}

function combine(
  current: string | undefined,
  op: AssignOp,
  value: string,
  expand: (value: string) => string,
): string {
  const before = current ?? '';
  switch (op) {
    case '=':
    case '?=':
    case '??=':
      return value;
    case ':=':
      return expand(value);
    case '+=':
      return before ? `${before} ${value}` : value;
    case '=+':
      return before ? `${value} ${before}` : value;
    case '.=':
      return before + value;
    case '=.':
      return value + before;
  }
}

/** PN and PV from a recipe's file name (`name_version.bb`; `%` in a bbappend matches any). */
export function recipeName(file: string): { pn: string; pv?: string } {
  const name = basename(file).replace(/\.(bb|bbappend)$/, '');
  const underscore = name.indexOf('_');
  if (underscore < 0) return { pn: name };
  const pv = name.slice(underscore + 1);
  return { pn: name.slice(0, underscore), ...(pv === '%' ? {} : { pv }) };
}

/** Reads a recipe (or bbappend) on top of the layer's configuration, as BitBake sets it up. */
export function readRecipe(file: string, layerConf: Datastore): Datastore {
  const { pn, pv } = recipeName(file);
  const data = layerConf.clone();
  const initial: Record<string, string> = {
    FILE: file,
    THISDIR: dirname(file),
    FILE_DIRNAME: dirname(file),
    PN: pn,
    BPN: pn,
    PV: pv ?? '1.0',
    BP: '${BPN}-${PV}',
    P: '${PN}-${PV}',
  };
  const preset = Object.entries(initial)
    .map(([name, value]) => `${name} = "${value}"`)
    .join('\n');
  data.apply(parseMetadata(preset));
  return data.apply(parseMetadata(readFileSync(file, 'utf8')));
}

/** Reads conf/layer.conf with LAYERDIR set to the layer. */
export function readLayerConf(layerDir: string, overrides: readonly string[]): Datastore {
  const data = new Datastore({ LAYERDIR: layerDir }, overrides);
  return data.apply(parseMetadata(readFileSync(`${layerDir}/conf/layer.conf`, 'utf8')));
}
