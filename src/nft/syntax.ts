// The shape of an nft script: the blocks inside `table inet portcullis { … }`, indented with
// tabs one level per nesting. Pure.

/** A block at table level: `chain name { … }`, `map name { … }`, `set …`, `counter …`. */
export function block(head: string, statements: readonly string[]): string[] {
  return [`\t${head} {`, ...statements.map((s) => `\t\t${s}`), '\t}'];
}

/** `elements = { a, b }` as statements of a block; nothing for no items. */
export function elements(items: readonly string[]): string[] {
  if (items.length === 0) return [];
  return ['elements = {', ...items.map((item, i) => `\t${item}${i < items.length - 1 ? ',' : ''}`), '}'];
}
