/** A labelled number input, one cell of a `.grid-form`; read back by its name from FormData. */
export function NumberField(props: {
  id: string;
  label: string;
  name: string;
  min: number;
  max?: number;
  defaultValue: string;
  disabled?: boolean;
}) {
  const { id, label, ...input } = props;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <input id={id} type="number" required {...input} />
    </div>
  );
}

/** A labelled choice among strings, each shown as itself. */
export function SelectField({
  id,
  label,
  value,
  options,
  onChange,
}: {
  id: string;
  label: string;
  value: string;
  options: readonly string[];
  onChange: (value: string) => void;
}) {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <select id={id} value={value} onChange={(event) => onChange(event.currentTarget.value)}>
        {options.map((option) => (
          <option key={option} value={option}>
            {option}
          </option>
        ))}
      </select>
    </div>
  );
}
