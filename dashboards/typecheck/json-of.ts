/**
 * The JSON view of a Grafana schema type.
 *
 * A dashboard JSON file holds `"mode": "absolute"`, not `ThresholdsMode.Absolute`: string enums
 * are replaced by the union of their string values (a template literal type of a string enum is
 * exactly that union). Everything else keeps its schema type, so unknown properties (excess
 * property checks on the object literal), wrong value types, missing required fields and enum
 * values that do not exist are all type errors.
 */
export type JsonOf<T> =
  T extends string ? `${T}` :
  T extends number | boolean | null | undefined ? T :
  T extends ReadonlyArray<infer U> ? Array<JsonOf<U>> :
  T extends object ? { [K in keyof T]: JsonOf<T[K]> } :
  T;
