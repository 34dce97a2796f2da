import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './io.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs with our errors: unknown options and missing values are usage errors. */
export function parseCommandArgs<T extends Options>(
  argv: string[],
  options: T,
  positionals: { min: number; max: number; names: string },
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\. To specify.*$/s, ''));
  }
  if (parsed.positionals.length < positionals.min) {
    throw new UsageError(`missing ${positionals.names}`);
  }
  if (parsed.positionals.length > positionals.max) {
    throw new UsageError(`unexpected argument '${parsed.positionals[positionals.max]}'`);
  }
  return {
    values: parsed.values,
    positionals: parsed.positionals,
  };
}

/** A string option, from the flag, else the environment variable, else the default. */
export function option(
  values: Record<string, string | boolean | undefined>,
  name: string,
  env: NodeJS.ProcessEnv,
  variable?: string,
  fallback?: string,
): string | undefined {
  const value = values[name];
  if (typeof value === 'string') return value;
  const fromEnv = variable ? env[variable] : undefined;
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : fallback;
}

export function requiredOption(
  values: Record<string, string | boolean | undefined>,
  name: string,
  env: NodeJS.ProcessEnv,
  variable?: string,
): string {
  const value = option(values, name, env, variable);
  if (value === undefined) {
    throw new UsageError(`--${name} is required${variable ? ` (or ${variable})` : ''}`);
  }
  return value;
}

export function integerOption(
  text: string | undefined,
  name: string,
  min: number,
  max: number,
): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text.trim()) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, not '${text}'`);
  }
  return Number(text);
}
