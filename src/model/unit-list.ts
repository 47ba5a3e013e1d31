/** "2, 5-7": ascending unit indexes with runs joined. */
export function formatUnitList (units: readonly number[]): string {
  const parts: string[] = []
  for (let i = 0; i < units.length;) {
    let j = i
    while (j + 1 < units.length && units[j + 1] === units[j] + 1) {
      j++
    }
    parts.push(j === i ? String(units[i]) : `${units[i]}-${units[j]}`)
    i = j + 1
  }
  return parts.join(', ')
}
