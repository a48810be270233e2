// Builds dist/: the ESM build (dist/esm) and the CommonJS build (dist/cjs), each with its
// .d.ts files, from src/ with the TypeScript compiler of devDependencies.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");

fs.rmSync(path.join(root, "dist"), { recursive: true, force: true });
for (const config of ["tsconfig.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", path.join(root, config)], { stdio: "inherit" });
}
// The package is "type": "module"; the CommonJS build says so for its own directory.
fs.writeFileSync(path.join(root, "dist", "cjs", "package.json"), JSON.stringify({ type: "commonjs" }) + "\n");
