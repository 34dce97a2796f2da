import createError from '@fastify/error';

/** The module API's errors: a stable code, an HTTP status, a message (as app/src/errors.ts). */
export const ModuleNotFound = createError<[string]>('MODULE_NOT_FOUND', 'no module %s', 404);
export const ExportNotFound = createError<[string, string]>(
  'EXPORT_NOT_FOUND',
  'module %s exports no function %s',
  404,
);
export const ModuleRefusedError = createError<[string, string]>(
  'MODULE_REFUSED',
  'module %s refused: %s',
  422,
);
export const ModuleStartFailed = createError<[string, string]>(
  'MODULE_START_FAILED',
  'module %s did not start: %s',
  422,
);
export const NoRoomForModule = createError<[string]>('MODULE_NO_ROOM', '%s', 503);
export const BadCall = createError<[string, string]>('BAD_CALL', 'call of %s: %s', 400);
export const ModuleTrap = createError<[string, string]>(
  'MODULE_TRAP',
  'module %s trapped: %s',
  422,
);
export const CpuQuotaExceeded = createError<[string, number]>(
  'MODULE_CPU_QUOTA',
  'module %s ran over its CPU quota of %d ms per call and was stopped',
  422,
);
export const ModuleCrashed = createError<[string, string]>(
  'MODULE_CRASHED',
  'module %s stopped during the call: %s',
  422,
);
export const ModuleBusy = createError<[string]>(
  'MODULE_BUSY',
  'module %s has too many calls waiting',
  503,
);
export const ModuleFailed = createError<[string, string]>(
  'MODULE_FAILED',
  'module %s is marked failed: %s',
  503,
);
export const ModuleUnloaded = createError<[string]>(
  'MODULE_UNLOADED',
  'module %s was unloaded',
  503,
);
/** A scheduled call not made: memory is short (the call route answers 503 MEMORY_PRESSURE then). */
export const ModuleCallShed = createError<[string]>(
  'MEMORY_PRESSURE',
  'memory is short: the scheduled call of %s is shed',
  503,
);
export const ModulesDisabled = createError(
  'MODULES_DISABLED',
  'the module sandbox is not running',
  503,
);
export const ModuleApiLocked = createError<[string]>(
  'MODULE_API_LOCKED',
  'module changes are refused: no API token file %s',
  403,
);
export const ModuleApiUnauthorized = createError(
  'MODULE_API_UNAUTHORIZED',
  'a valid bearer token is needed',
  401,
);
