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

// Patches to NiiVue's source, each checked: another NiiVue version without the patched text fails the
// build here instead of silently shipping without the patch.
//
// 1. no-render-gradient. NiiVue recomputes the 3D render's gradient texture (a blur and a Sobel pass
// over the whole volume) every time the image layer is refreshed: on load and on every window/level
// step. The viewer never shows a 3D render (multiplanarShowRender NEVER, no render plane), so that
// work is skipped when the viewer sets ``opts.oncolensNoRender``.
const GRADIENT = "    if (layer === 0) {\n      this.volumeTexture = outTexture;\n      this.gradientTexture = gradientGL({";
// 2. lazy-shaders. NiiVue compiles and links every shader program it has when it attaches to its
// canvas (about 45: 3D rendering, meshes, fibres, image processing, picking), each link waited for.
// The viewer draws slices with a handful of them. A program is now compiled the first time it is
// used (``use``, ``program`` or ``uniforms`` read), so the programs a slice view never needs are never
// compiled, and the attach (which holds the page's main thread, the iframe's and Streamlit's alike)
// is shorter. A compile error still throws, at first use instead of at attach.
const SHADER = "    this.program = compileShader(gl, vertexSrc, fragmentSrc);\n    const regexUniform";
const LAZY_SHADER = "    this.lazySource = [gl, vertexSrc, fragmentSrc];\n  }\n  get program() {\n    if (this.lazySource) this.compileNow();\n    return this.compiledProgram;\n  }\n  get uniforms() {\n    if (this.lazySource) this.compileNow();\n    return this.compiledUniforms;\n  }\n  compileNow() {\n    const [gl, vertexSrc, fragmentSrc] = this.lazySource;\n    this.lazySource = null;\n    this.compiledUniforms = {};\n    this.compiledProgram = compileShader(gl, vertexSrc, fragmentSrc);\n    const regexUniform";
const SHADER_FIELDS = '    __publicField(this, "program");\n    __publicField(this, "uniforms", {});\n';
const niivuePatches = [
  ["no-render-gradient", GRADIENT, GRADIENT.replace("this.gradientTexture = gradientGL({", "if (!this.opts.oncolensNoRender) this.gradientTexture = gradientGL({")],
  ["lazy-shaders (fields)", SHADER_FIELDS, ""],
  ["lazy-shaders (compile)", SHADER, LAZY_SHADER],
];
const patchNiivue = {
  name: "patch-niivue",
  setup(b) {
    b.onLoad({ filter: /@niivue[\\/]niivue[\\/]build[\\/]niivue[\\/]index\.js$/ }, (args) => {
      let source = readFileSync(args.path, "utf8");
      for (const [name, before, after] of niivuePatches) {
        if (source.split(before).length !== 2) {
          throw new Error(`NiiVue's source changed: review the ${name} patch in build.mjs`);
        }
        source = source.replace(before, after);
      }
      return { contents: source, loader: "js" };
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
  plugins: [noZarrCodecs, patchNiivue],
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
