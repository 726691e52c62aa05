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
// 2. trusted-range. When an image is read with its window given (``trustCalMinMax`` and a valid
// cal_min/cal_max: how the viewer reads every image and overlay), NiiVue's calMinMax still copies the
// volume's centre (the middle half along each axis) into a new array, over a loop through every
// voxel, only to take that centre's min and max (``global_min``/``global_max``: the windowing drag's
// range, the label colours' size). The same min and max are now read from the centre in place:
// an eighth of the loop and no copy (about half of reading the image, profiled). The same voxels, the
// same zero and NaN rules, the same results (checked in the browser against the unpatched build:
// docs/benchmarks.md, viewer); any other case (no window given, a colour map with its own range, the
// whole-volume pass) runs NiiVue's code unchanged.
const CALMINMAX = "function calMinMax(nvImage, vol = Number.POSITIVE_INFINITY, isBorder = true) {\n";
const TRUSTED_RANGE = `function oncolensTrustedRange(nvImage, skipVox) {
  const hdr = nvImage.hdr;
  if (!nvImage.trustCalMinMax || !isFinite(hdr.cal_min) || !isFinite(hdr.cal_max) || !(hdr.cal_max > hdr.cal_min)) {
    return null;
  }
  const cmap = cmapper.colormapFromKey(nvImage._colormap);
  if ((cmap.min !== void 0 ? cmap.min : 0) !== (cmap.max !== void 0 ? cmap.max : 0)) {
    return null;
  }
  const d = [hdr.dims[1], hdr.dims[2], hdr.dims[3]];
  const lo = [Math.floor(0.25 * d[0]), Math.floor(0.25 * d[1]), Math.floor(0.25 * d[2])];
  const hi = [d[0] - lo[0], d[1] - lo[1], d[2] - lo[2]];
  const img = nvImage.img;
  const isFloat = img.constructor === Float64Array || img.constructor === Float32Array;
  const skipZeros = nvImage.ignoreZeroVoxels && isFloat;
  let mn = Number.POSITIVE_INFINITY;
  let mx = Number.NEGATIVE_INFINITY;
  let nZero = 0;
  for (let z = lo[2]; z < hi[2]; z++) {
    for (let y = lo[1]; y < hi[1]; y++) {
      let j = skipVox + (z * d[1] + y) * d[0] + lo[0];
      for (let x = lo[0]; x < hi[0]; x++, j++) {
        const v = img[j];
        if (v !== v) continue;
        if (v === 0) {
          nZero++;
          if (skipZeros) continue;
        }
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
    }
  }
  if (nvImage.ignoreZeroVoxels && mn === mx && nZero > 0) {
    mn = 0;
  }
  nvImage.cal_min = hdr.cal_min;
  nvImage.cal_max = hdr.cal_max;
  nvImage.robust_min = nvImage.cal_min;
  nvImage.robust_max = nvImage.cal_max;
  nvImage.global_min = intensityRaw2Scaled(nvImage, mn);
  nvImage.global_max = intensityRaw2Scaled(nvImage, mx);
  return [hdr.cal_min, hdr.cal_max, hdr.cal_min, hdr.cal_max];
}
`;
const SKIPVOX = "  const skipVox = vol * nVox3D;\n  let img = [];\n  if (!isBorder) {\n    img = new nvImage.img.constructor(nVox3D);";
const TRUSTED_CALL = "  const skipVox = vol * nVox3D;\n  const trusted = isBorder ? oncolensTrustedRange(nvImage, skipVox) : null;\n  if (trusted) {\n    return trusted;\n  }\n  let img = [];\n  if (!isBorder) {\n    img = new nvImage.img.constructor(nVox3D);";
const niivuePatches = [
  ["no-render-gradient", GRADIENT, GRADIENT.replace("this.gradientTexture = gradientGL({", "if (!this.opts.oncolensNoRender) this.gradientTexture = gradientGL({")],
  ["trusted-range (helper)", CALMINMAX, TRUSTED_RANGE + CALMINMAX],
  ["trusted-range (call)", SKIPVOX, TRUSTED_CALL],
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
