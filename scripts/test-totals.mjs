// The closing line of a test run, from vitest's JSON reports: "N passed, N failed, N skipped".
//   node scripts/test-totals.mjs --label "node v22" report.json   one run, labelled
//   node scripts/test-totals.mjs a.json b.json ...                 the totals over several runs
// A test file that failed before its tests ran (a failing beforeAll) has them all reported as
// skipped by vitest: they are counted as failed here, so no closing line hides a broken file.
// A missing or unreadable report counts as one failure. With --label, each failed test follows
// its line (file > title: the first line of the failure), so CI's closing lines name them.
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const label = args[0] === '--label' ? args[1] : undefined;
const files = label === undefined ? args : args.slice(2);

function countsOf(file) {
  let report;
  try {
    report = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return { passed: 0, failed: 1, skipped: 0, missing: true, names: [] };
  }
  const names = [];
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const testFile of report.testResults) {
    const brokenFile = testFile.status === 'failed' && !testFile.assertionResults.some((t) => t.status === 'failed');
    if (brokenFile && testFile.assertionResults.length === 0) {
      failed += 1;
      names.push(`${relative(testFile.name)}: ${firstLine(testFile.message)}`);
    }
    for (const test of testFile.assertionResults) {
      if (test.status === 'passed') passed += 1;
      else if (test.status === 'failed' || brokenFile) {
        failed += 1;
        names.push(describeFailure(testFile, test));
      }
      else skipped += 1;
    }
  }
  return { passed, failed, skipped, missing: false, names };
}

function relative(path) {
  return path.replace(`${process.cwd()}/`, '');
}

function firstLine(text) {
  const line = String(text ?? '').split('\n').find((l) => l.trim() !== '') ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

function describeFailure(testFile, test) {
  const title = [...(test.ancestorTitles ?? []), test.title].join(' > ');
  const message = firstLine((test.failureMessages ?? [])[0] ?? testFile.message);
  return `${relative(testFile.name)} > ${title}: ${message}`;
}

const total = { passed: 0, failed: 0, skipped: 0, missing: false, names: [] };
for (const file of files) {
  const counts = countsOf(file);
  total.passed += counts.passed;
  total.failed += counts.failed;
  total.skipped += counts.skipped;
  total.missing ||= counts.missing;
  total.names.push(...counts.names);
}
const line = `${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`;
if (label === undefined) console.log(line);
else {
  console.log(`${label}: ${line}${total.missing ? ' (no test report)' : ''}`);
  for (const name of total.names) console.log(`  failed: ${name}`);
}
