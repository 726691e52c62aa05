// Builds the viewer into build/ (committed: `make run` needs no Node). `make viewer` runs this.
// NiiVue and our code in one file, nothing fetched beyond it at run time.
import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";

// NiiVue reads zarr images through numcodecs' WebAssembly codecs (1.4 MB, loaded by dynamic import,
// only for zarr). The viewer gets NIfTI only, so they are left out: a zarr load would fail with
// this message instead of the first render parsing 2.2 MB instead of 0.9 MB.
const noZarrCodecs = {
  name: "no-zarr-codecs",
  setup(b) {
    b.onResolve({ filter: /^numcodecs\// }, (args) => ({ path: args.path, namespace: "no-zarr" }));
    b.onLoad({ filter: /.*/, namespace: "no-zarr" }, (args) => ({
      contents: `throw new Error("${args.path} is not shipped with the OncoLens viewer (zarr images are not supported)");`,
      loader: "js",
    }));
  },
};

// NiiVue recomputes the 3D render's gradient texture (a blur and a Sobel pass over the whole volume)
// every time the image layer is refreshed: on load and on every window/level step. The viewer never
// shows a 3D render (multiplanarShowRender NEVER, no render plane), so that work is skipped when the
// viewer sets ``opts.oncolensNoRender``. The patched line is checked: another NiiVue version without
// it fails the build here instead of silently computing the gradient again.
const GRADIENT = "    if (layer === 0) {\n      this.volumeTexture = outTexture;\n      this.gradientTexture = gradientGL({";
const noRenderGradient = {
  name: "no-render-gradient",
  setup(b) {
    b.onLoad({ filter: /@niivue[\\/]niivue[\\/]build[\\/]niivue[\\/]index\.js$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      if (source.split(GRADIENT).length !== 2) {
        throw new Error("NiiVue's refreshLayers changed: review the no-render-gradient patch in build.mjs");
      }
      const patched = GRADIENT.replace("this.gradientTexture = gradientGL({", "if (!this.opts.oncolensNoRender) this.gradientTexture = gradientGL({");
      return { contents: source.replace(GRADIENT, patched), loader: "js" };
    });
  },
};

rmSync("build", { recursive: true, force: true });
mkdirSync("build");
const result = await build({
  metafile: true,
  entryPoints: ["src/index.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  outfile: "build/viewer.js",
  plugins: [noZarrCodecs, noRenderGradient],
  legalComments: "eof",
  logLevel: "info",
});
copyFileSync("src/index.html", "build/index.html");

// The licences of every npm package inside the bundle, shipped beside it.
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.add(m[1]);
}
const notices = [...packages].sort().map((name) => {
  const dir = `node_modules/${name}`;
  const { version, license } = JSON.parse(readFileSync(`${dir}/package.json`, "utf8"));
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
  const text = file && existsSync(`${dir}/${file}`) ? readFileSync(`${dir}/${file}`, "utf8").trim() : `(${license}; no licence file in the package)`;
  return `${name} ${version} (${license})\n\n${text}\n`;
});
writeFileSync("build/THIRD_PARTY_LICENSES.txt", `Packages bundled in viewer.js\n\n${notices.join("\n" + "-".repeat(72) + "\n\n")}`);
