import type { NewRollout } from '../api-types.js';
import { NumberField } from './form-fields.js';

/** The automatic pause's settings: a failure rate, counted once enough devices tried. */
export type Guard = Pick<NewRollout, 'failureThresholdPercent' | 'minDevicesForThreshold'>;

/** The guard's two inputs, as starting a roll-out and changing one ask for them. */
export function GuardFields({
  ids,
  values,
  disabled,
}: {
  ids: { threshold: string; minDevices: string };
  values: Guard;
  disabled?: boolean;
}) {
  return (
    <>
      <NumberField
        id={ids.threshold}
        label="Pause at failure rate (%)"
        name="failureThresholdPercent"
        min={1}
        max={100}
        defaultValue={String(values.failureThresholdPercent)}
        disabled={disabled}
      />
      <NumberField
        id={ids.minDevices}
        label="…once this many tried"
        name="minDevicesForThreshold"
        min={1}
        defaultValue={String(values.minDevicesForThreshold)}
        disabled={disabled}
      />
    </>
  );
}

/** What GuardFields hold when the form is submitted. */
export function guardFromForm(form: FormData): Guard {
  return {
    failureThresholdPercent: Number(form.get('failureThresholdPercent')),
    minDevicesForThreshold: Number(form.get('minDevicesForThreshold')),
  };
}
