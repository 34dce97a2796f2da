/** The module ABI (/work/notes/wasm-abi.md): what the host and every module agree on. */

/** Negative i32 results of host functions; the same for every host function. */
export const EdgeError = {
  EINVAL: -1,
  EUTF8: -2,
  ETOOBIG: -3,
  EDENIED: -4,
  EIO: -5,
  ESCHEMA: -6,
  EQUOTA: -7,
} as const;

/** The module every host function is imported from. */
export const HOST_MODULE = 'env';
export const WASI_MODULE = 'wasi_snapshot_preview1';

/** Host functions by name, with the only signature each may be imported with. */
export const HOST_FUNCTIONS = {
  edge_log: { params: ['i32', 'i32', 'i32'], results: ['i32'] },
  get_sensor: { params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'] },
  post_uplink: { params: ['i32', 'i32'], results: ['i32'] },
} as const;
export type HostFunctionName = keyof typeof HOST_FUNCTIONS;

export const LOG_MAX_BYTES = 1024;
export const SENSOR_PATH_MAX_BYTES = 256;
export const SENSOR_READ_MAX_BYTES = 4096;
export const UPLINK_MAX_BYTES = 16 * 1024;

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Exports the host looks for. */
export const MEMORY_EXPORT = 'memory';
export const ALLOC_EXPORT = 'edge_alloc';
export const INIT_EXPORT = 'edge_init';

export const WASM_PAGE_BYTES = 65536;
