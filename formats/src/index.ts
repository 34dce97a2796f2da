export {
  TEMP_INFIX,
  removeStaleTempFiles,
  syncDirectory,
  tempPathFor,
  writeFileAtomic,
} from './atomic-file.js';
export {
  hashSlotImage,
  sha256OfFile,
  slotImageLength,
  storageLength,
  type SlotHashProgress,
} from './slot-image.js';
export {
  UBOOT_ENV_HEADER_SIZE,
  UbootEnvError,
  decodeUbootEnv,
  encodeUbootEnv,
  ubootEnvCrcIsValid,
  type UbootEnvErrorCode,
} from './uboot-env.js';
export {
  AB_SEQUENCE_KEY,
  AB_STATE_FILE_NAMES,
  AB_STATE_SIZE,
  NoValidEnvCopyError,
  RedundantEnvFile,
  type EnvCopyNumber,
  type EnvCopyStatus,
  type RedundantEnvOptions,
  type RedundantEnvState,
} from './uboot-env-store.js';
export {
  AbStateStore,
  DEFAULT_AB_STATE,
  DEFAULT_ATTEMPT_LIMIT,
  SLOT_PARTITION,
  abStateFromEnv,
  abStateToEnv,
  isSlotName,
  otherSlot,
  type AbState,
  type SlotName,
} from './ab-state.js';
export {
  TargetNameError,
  deltaTargetName,
  imageTargetName,
  targetNameOf,
  type DeltaTarget,
  type ImageTarget,
  type TargetDescription,
} from './update-targets.js';
export * from './delta/index.js';
