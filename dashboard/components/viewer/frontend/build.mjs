// Builds the viewer into build/ (committed: `make run` needs no Node). `make viewer` runs this.
// One self-contained bundle: NiiVue and our code, no network fetch at run time.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

rmSync("build", { recursive: true, force: true });
mkdirSync("build");
await build({
  entryPoints: ["src/index.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  outfile: "build/viewer.js",
  legalComments: "linked", // licences of NiiVue and its dependencies, in build/viewer.js.LEGAL.txt
  logLevel: "info",
});
copyFileSync("src/index.html", "build/index.html");
