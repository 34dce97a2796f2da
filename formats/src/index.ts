export { hashSlotImage, slotImageLength, type SlotHashProgress } from './slot-image.js';
