#!/usr/bin/env bash
# Lints and unit-tests the built-in Rego: strict compile checks, formatting, `opa test` with
# coverage (at least 95 % of the decision Rego).
set -euo pipefail
cd "$(dirname "$0")/.."
opa=.cache/bin/opa
"$opa" check --strict policies/portcullis
unformatted=$("$opa" fmt -l policies/portcullis)
[ -z "$unformatted" ] || { echo "not formatted with opa fmt: $unformatted" >&2; exit 1; }
"$opa" test -v policies/portcullis | tail -n 3
"$opa" test --coverage policies/portcullis | node -e '
  let text = ""; process.stdin.on("data", (d) => (text += d)).on("end", () => {
    const report = JSON.parse(text);
    const file = Object.entries(report.files).find(([name]) => name.endsWith("authz.rego"));
    const pct = file[1].coverage;
    console.log(`coverage of ${file[0]}: ${pct.toFixed(1)} %`);
    if (pct < 95) { console.error("coverage below 95 %"); process.exit(1); }
  });'
