// OncoLens image viewer: NiiVue (WebGL2) in a Streamlit component.
//
// Python sends one render event with the image as NIfTI bytes, each overlay as gzipped NIfTI
// bytes (uint8), and a JSON ``spec`` (title, presets, overlays, orientation known or not, height).
// Everything after that (scrolling, window/level, presets, tools, overlay toggles and
// opacity) happens here, in the browser, with no round trip to Python: that is what replaces
// the Imaging page's slider-and-rerun window/level (about two seconds per change).
//
// Speed (docs/benchmarks.md, viewer): NiiVue attaches to its canvas (WebGL context, shaders) while
// the page's first render event is on its way, not after it; the slice moves at once on each wheel
// step or key, but the picture is drawn once per animation frame, however many steps arrived in it
// (NiiVue draws and waits for the GPU on every event otherwise, which queues up on a slow GPU).
// While a scroll is under way on a GPU too slow to draw 25 frames a second at full resolution
// (a software WebGL, a thin client), the frames are drawn at a lower resolution, learned from the
// frames' own cost, and the full-resolution picture follows 150 ms after the last step (a level of
// detail, as VTK's interactive renders): see "Level of detail" below and docs/volumes.md.
//
// ``window.oncolensViewer.state()`` reports what is on screen (slice, window, overlays) so
// that browser tests and the benchmark read the viewer's state instead of guessing.

import { DRAG_MODE, MULTIPLANAR_TYPE, NVImage, Niivue, SHOW_RENDER, SLICE_TYPE } from "@niivue/niivue";
import { onRender, ready, setFrameHeight } from "./streamlit.js";

const PLANES = [
  ["Axial", SLICE_TYPE.AXIAL, "a"],
  ["Coronal", SLICE_TYPE.CORONAL, "o"],
  ["Sagittal", SLICE_TYPE.SAGITTAL, "s"],
  ["MPR", SLICE_TYPE.MULTIPLANAR, "x"],
];
const TOOLS = [
  ["W/L", DRAG_MODE.windowing, "w", "Drag: left-right changes the width, up-down the level"],
  ["Caliper", DRAG_MODE.measurement, "m", "Drag to measure a distance in mm"],
  ["Crosshair", DRAG_MODE.crosshair, "c", "Click to move the crosshair (and the other planes)"],
  ["Zoom/pan", DRAG_MODE.pan, "z", "Drag to pan; the wheel zooms while this tool is on"],
];
// the voxel axis a plane scrolls along: axial -> k (z), coronal -> j (y), sagittal -> i (x)
const AXIS = { [SLICE_TYPE.AXIAL]: 2, [SLICE_TYPE.CORONAL]: 1, [SLICE_TYPE.SAGITTAL]: 0 };
const PLANE_NAME = { [SLICE_TYPE.AXIAL]: "Axial", [SLICE_TYPE.CORONAL]: "Coronal", [SLICE_TYPE.SAGITTAL]: "Sagittal" };

const t0 = performance.now();
const bar = document.getElementById("bar");
const layersBar = document.getElementById("layers");
const canvas = document.getElementById("gl");
const wrap = document.getElementById("wrap");
const statusLine = document.getElementById("status");
const errorBox = document.getElementById("error");

let spec = null;
let loadedId = null;
let loading = null;
let sliceType = SLICE_TYPE.AXIAL;
let tool = DRAG_MODE.windowing;
let overlays = []; // {name, kind, visible, opacity, index}
let lastMeasurement = null;
let firstDrawMs = null;
let location = null;
const timings = { module: t0 }; // ms since the iframe's navigation began: where first-render time goes
let draws = 0; // NiiVue's drawScene calls: how many draws one wheel step or key costs
let drawPending = false;
let statusShown = "";

const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toPrecision(3));

function showError(message) {
  errorBox.textContent = message;
  errorBox.style.display = "block";
  wrap.style.display = "none";
  setFrameHeight(document.body.scrollHeight);
}

function base() {
  return nv && nv.volumes.length ? nv.volumes[0] : null;
}

function currentSlices() {
  const vol = base();
  if (!vol) return null;
  const vox = nv.frac2vox(nv.scene.crosshairPos);
  const dims = [vol.dims[1], vol.dims[2], vol.dims[3]];
  return { vox: [Math.round(vox[0]), Math.round(vox[1]), Math.round(vox[2])], dims };
}

function windowOf() {
  const vol = base();
  return vol ? { center: (vol.cal_min + vol.cal_max) / 2, width: vol.cal_max - vol.cal_min } : null;
}

function renderStatus() {
  const s = currentSlices();
  const w = windowOf();
  if (!s || !w) return;
  const parts = [];
  if (spec.is_volume) {
    if (sliceType === SLICE_TYPE.MULTIPLANAR) {
      parts.push(`slices <b>${s.vox[0] + 1}/${s.dims[0]} · ${s.vox[1] + 1}/${s.dims[1]} · ${s.vox[2] + 1}/${s.dims[2]}</b> (sag · cor · ax)`);
    } else {
      const axis = AXIS[sliceType];
      parts.push(`${PLANE_NAME[sliceType]} slice <b>${s.vox[axis] + 1}/${s.dims[axis]}</b>`);
    }
  }
  parts.push(`window <b>${fmt(w.center)} / ${fmt(w.width)}</b>${spec.units ? " " + spec.units : ""}`);
  if (location && location.values && location.values.length) {
    const v = location.values[0].value;
    if (Number.isFinite(v)) parts.push(`value <b>${fmt(v)}</b>${spec.units ? " " + spec.units : ""}`);
  }
  if (lastMeasurement !== null) {
    parts.push(spec.spacing_known ? `caliper <b>${lastMeasurement.toFixed(1)} mm</b>` : `caliper <b>${lastMeasurement.toFixed(1)} px</b> (no pixel spacing: not mm)`);
  }
  if (!spec.orientation_known) parts.push("orientation unknown: no L/R labels");
  const html = parts.map((p) => `<span>${p}</span>`).join("");
  if (html === statusShown) return; // unchanged: no relayout, no repaint
  statusLine.innerHTML = html;
  statusShown = html;
}

function button(label, title, pressed, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.title = title;
  b.setAttribute("aria-pressed", pressed ? "true" : "false");
  b.addEventListener("click", onClick);
  return b;
}

function group(label, parent = bar) {
  const g = document.createElement("div");
  g.className = "group";
  g.setAttribute("role", "group");
  g.setAttribute("aria-label", label);
  parent.appendChild(g);
  return g;
}

function press(groupEl, pressedButton) {
  for (const b of groupEl.querySelectorAll("button")) b.setAttribute("aria-pressed", b === pressedButton ? "true" : "false");
}

function setPlane(type) {
  sliceType = type;
  nv.setSliceType(type);
  renderStatus();
}

function setTool(mode) {
  tool = mode;
  nv.setMouseEventConfig({
    leftButton: { primary: mode, withShift: DRAG_MODE.measurement, withCtrl: DRAG_MODE.crosshair },
    rightButton: DRAG_MODE.pan,
    centerButton: DRAG_MODE.pan,
  });
  nv.opts.dragMode = mode;
}

function applyWindow(center, width) {
  const vol = base();
  vol.cal_min = center - width / 2;
  vol.cal_max = center + width / 2;
  nv.updateGLVolume();
  renderStatus();
}

function applyOverlay(o) {
  nv.setOpacity(o.index, o.visible ? o.opacity : 0);
  renderStatus();
}

function buildBar() {
  bar.replaceChildren();
  layersBar.replaceChildren();
  layersBar.style.display = overlays.length ? "flex" : "none";
  if (spec.is_volume) {
    const g = group("Plane");
    for (const [label, type, key] of PLANES) {
      const b = button(label, `${label} (key ${key})`, type === sliceType, () => { setPlane(type); press(g, b); });
      b.dataset.plane = label;
      g.appendChild(b);
    }
  }
  const presetGroup = group("Window preset");
  const select = document.createElement("select");
  select.id = "preset";
  select.setAttribute("aria-label", "Window preset");
  spec.presets.forEach((p, i) => {
    const opt = document.createElement("option");
    opt.value = String(i);
    opt.textContent = p.name;
    select.appendChild(opt);
  });
  select.value = String(spec.preset_index || 0);
  select.addEventListener("change", () => {
    const p = spec.presets[Number(select.value)];
    applyWindow(p.center, p.width);
  });
  presetGroup.appendChild(select);

  const toolGroup = group("Mouse tool");
  for (const [label, mode, key, title] of TOOLS) {
    const b = button(label, `${title} (key ${key})`, mode === tool, () => { setTool(mode); press(toolGroup, b); });
    b.dataset.tool = label;
    toolGroup.appendChild(b);
  }
  toolGroup.appendChild(button("Reset", "Reset window, zoom and measurements (key r)", false, reset));

  for (const o of overlays) {
    const g = group(`Overlay ${o.name}`, layersBar);
    const l = document.createElement("label");
    l.className = "toggle";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = o.visible;
    box.dataset.overlay = o.name;
    box.addEventListener("change", () => { o.visible = box.checked; applyOverlay(o); });
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = o.swatch;
    l.append(box, sw, document.createTextNode(o.name));
    l.title = o.note || o.name;
    g.appendChild(l);
    const r = document.createElement("input");
    r.type = "range";
    r.min = "0";
    r.max = "1";
    r.step = "0.05";
    r.value = String(o.opacity);
    r.dataset.opacity = o.name;
    r.setAttribute("aria-label", `${o.name} opacity`);
    r.title = `${o.name} opacity`;
    r.addEventListener("input", () => { o.opacity = Number(r.value); applyOverlay(o); });
    g.appendChild(r);
  }
}

function reset() {
  const p = spec.presets[spec.preset_index || 0];
  applyWindow(p.center, p.width);
  const select = document.getElementById("preset");
  if (select) select.value = String(spec.preset_index || 0);
  nv.setPan2Dxyzmm([0, 0, 0, 1]);
  nv.clearAllMeasurements?.();
  lastMeasurement = null;
  renderStatus();
}

/** Moves ``step`` slices along ``axis`` (voxel i, j, k) at once; the picture follows at the next frame. */
function stepSlice(axis, step) {
  const vol = base();
  if (!vol || !step) return;
  const vox = nv.frac2vox(nv.scene.crosshairPos);
  const next = [vox[0], vox[1], vox[2]];
  next[axis] = Math.max(0, Math.min(next[axis] + step, vol.dimsRAS[axis + 1] - 1));
  if (next[axis] === vox[axis]) return;
  nv.scene.crosshairPos = nv.vox2frac(next);
  nv.createOnLocationChange(); // the value under the crosshair, the status line
  requestDraw();
}

function scroll(step) {
  if (!spec || !spec.is_volume) return;
  stepSlice(AXIS[sliceType] ?? 2, step);
}

// The wheel over a slice, before NiiVue's own handler (which draws and waits for the GPU on every
// event): one slice per event, as NiiVue steps (wheel up: -1), one draw per frame. NiiVue keeps
// the wheel where it does more than step a slice: the zoom tool, and outside the slice tiles.
wrap.addEventListener(
  "wheel",
  (e) => {
    if (!spec || !spec.is_volume || tool === DRAG_MODE.pan || e.target !== canvas || !base()) return;
    const r = canvas.getBoundingClientRect();
    const dpr = nv.uiData.dpr || 1;
    const tile = nv.tileIndex((e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr);
    const plane = tile >= 0 ? nv.screenSlices[tile].axCorSag : -1;
    if (!(plane in AXIS)) return;
    e.preventDefault();
    e.stopPropagation();
    canvas.focus();
    stepSlice(AXIS[plane], e.deltaY < 0 ? -1 : e.deltaY > 0 ? 1 : 0);
  },
  { capture: true, passive: false },
);

// keys anywhere in the viewer (NiiVue's mousedown prevents the canvas from taking focus), except
// while a control (the preset list, an opacity slider) has it
document.addEventListener("keydown", (e) => {
  if (!spec || e.target instanceof HTMLSelectElement || e.target instanceof HTMLInputElement) return;
  const keys = { ArrowUp: 1, PageUp: 5, ArrowDown: -1, PageDown: -5 };
  if (e.key in keys) {
    scroll(keys[e.key]);
    e.preventDefault();
  } else if (e.key === "r") {
    reset();
  } else {
    const plane = PLANES.find((p) => p[2] === e.key);
    const t = TOOLS.find((x) => x[2] === e.key);
    if (plane && spec.is_volume) document.querySelector(`button[data-plane="${plane[0]}"]`).click();
    if (t) document.querySelector(`button[data-tool="${t[0]}"]`).click();
  }
});
canvas.addEventListener("pointerdown", () => canvas.focus());
for (const ev of ["pointermove", "pointerup", "wheel"]) canvas.addEventListener(ev, () => requestAnimationFrame(renderStatus));

// The page asks for a height that fits under its header at 1366 x 768; a taller screen gets a taller
// image (up to square), read from the page around the iframe (same origin), else the asked height.
function canvasHeight() {
  let screen = 0;
  try {
    screen = window.parent.innerHeight;
  } catch {
    screen = 0;
  }
  return Math.round(Math.max(spec.height, Math.min(screen - 480, wrap.clientWidth || spec.height)));
}

function labelLut(rgb, name) {
  return { R: [0, rgb[0]], G: [0, rgb[1]], B: [0, rgb[2]], A: [0, 255], I: [0, 1], labels: ["", name] };
}

// NiiVue and its canvas, made before the first render event arrives: creating the WebGL context and
// compiling the shaders (about 100-150 ms on a software GL) overlaps the page's reply to ``ready``.
// The options that depend on the image (orientation labels, caliper units) are set per image in load.
// The gap between the multiplanar view's tiles, in CSS pixels: about two letters of NiiVue's label
// font, so one tile's label and its neighbour's stand apart (checked in Chromium at 1366 x 768).
const MPR_GAP_PX = 16;
const nv = new Niivue({
  backColor: [0, 0, 0, 1],
  crosshairColor: [0.3, 0.75, 1.0, 0.85],
  crosshairWidth: 0.5,
  crosshairGap: 12, // the pixels under the crosshair's centre stay visible
  isRadiologicalConvention: true, // the patient's right on the screen's left, as radiologists read
  isOrientationTextVisible: false,
  isColorbar: false,
  show3Dcrosshair: false,
  multiplanarShowRender: SHOW_RENDER.NEVER, // no 3D render tile: four tiles' work per draw for three
  multiplanarLayout: MULTIPLANAR_TYPE.AUTO,
  // a gap between the tiles: NiiVue draws each tile's side labels just inside its edges, so with
  // none the coronal tile's "L" and the sagittal tile's "P" touched and read "LP" (1366 x 768)
  multiplanarPadPixels: MPR_GAP_PX,
  showAllOrientationMarkers: true, // L and R, A and P, S and I: all four sides
  dragAndDropEnabled: false, // nothing enters the viewer but what the page sends
  viewModeHotKey: "", // our own keys (a/o/s/x) pick the plane
  clipPlaneHotKey: "",
  cycleClipPlaneHotKey: "",
  measureTextColor: [1, 1, 0, 1],
  measureLineColor: [1, 1, 0, 1],
  loadingText: "",
  logLevel: "error",
});
// no 3D render anywhere in this viewer: NiiVue skips the render's gradient texture (a blur and a Sobel
// pass over the volume on every load and window/level step; patched in by build.mjs)
nv.opts.oncolensNoRender = true;
nv.onLocationChange = (loc) => { location = loc; renderStatus(); };
nv.onMeasurementCompleted = (m) => { lastMeasurement = m.distance; renderStatus(); };
// Every draw goes through here: counted (the benchmark and the tests read ``draws``), and held while
// an image loads, where NiiVue would draw after the upload, the plane and the start slice in turn
// (each a full draw and a wait for the GPU): one draw at the end instead.
const drawNow = nv.drawScene.bind(nv);
let holdDraws = false;
nv.drawScene = () => {
  if (holdDraws) return undefined;
  draws += 1;
  return drawNow();
};

// Level of detail. A scroll frame draws the slice at LOD_SCALES[lod.level] of the canvas's full
// resolution (its backing store shrunk, the browser scales it up), and SCROLL_IDLE_MS after the last
// step the canvas gets its full resolution back and is drawn once more: that last picture is the one
// a draw without any of this gives (NiiVue's own resize path: the same size, pixel ratio and fonts).
// The level is learned from the scroll frames' own cost (from the frame's draw to the next frame):
// a frame over the budget moves to the scale that the cost, proportional to the pixels drawn, says
// fits; one under half of it moves a level up. On a GPU every frame fits and nothing is reduced;
// in headless Chromium's software WebGL the slice shader's per-pixel work is the bound
// (docs/benchmarks.md, viewer), and a quarter of the resolution draws about a sixteenth of the pixels.
const LOD_SCALES = [1, 0.7, 0.5, 0.35, 0.25];
const SCROLL_IDLE_MS = 150;
const lod = {
  budgetMs: 40, // a scroll frame may cost this much (25 frames/s: a margin over the 20 slices/s target)
  level: 0, // the level the next scroll frame draws at (learned)
  drawnLevel: 0, // the level the canvas is at now
  lastFrameMs: null, // the last scroll frame's measured cost
  reducedDraws: 0,
  fullDraws: 0, // full-resolution pictures drawn when a reduced scroll stopped
  idleTimer: 0,
};

/** The canvas's backing store at ``level`` (NiiVue's resize: canvas size, pixel ratio, font size), drawn. */
function setLevel(level) {
  lod.drawnLevel = level;
  nv.opts.forceDevicePixelRatio = level === 0 ? 0 : (window.devicePixelRatio || 1) * LOD_SCALES[level];
  nv.resizeListener(); // resizes and draws (one draw, counted)
}

/** Learns the scroll level from one frame's cost at ``level`` (ms from its draw to the next frame). */
function learn(level, costMs) {
  lod.lastFrameMs = costMs;
  if (costMs > lod.budgetMs) {
    const wanted = LOD_SCALES[level] * Math.sqrt(lod.budgetMs / costMs); // cost ~ pixels ~ scale^2
    let next = level + 1;
    while (next < LOD_SCALES.length - 1 && LOD_SCALES[next] > wanted) next += 1;
    lod.level = Math.min(next, LOD_SCALES.length - 1);
  } else if (costMs < lod.budgetMs / 2 && level > 0) {
    lod.level = level - 1;
  }
}

/** Full resolution again once the scroll has stopped for SCROLL_IDLE_MS (nothing to do if it never left). */
function scrolled() {
  clearTimeout(lod.idleTimer);
  lod.idleTimer = setTimeout(() => {
    lod.idleTimer = 0;
    if (lod.drawnLevel === 0) return;
    requestAnimationFrame(() => {
      if (lod.idleTimer || lod.drawnLevel === 0) return; // scrolling again: its frames restore it later
      lod.fullDraws += 1;
      setLevel(0);
    });
  }, SCROLL_IDLE_MS);
}

/** One draw at the next animation frame, however many slice steps come before it, at the scroll's level. */
function requestDraw() {
  scrolled();
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    const level = lod.level;
    const start = performance.now();
    if (level !== lod.drawnLevel) setLevel(level);
    else nv.drawScene();
    if (level > 0) lod.reducedDraws += 1;
    requestAnimationFrame(() => learn(level, performance.now() - start));
  });
}

async function load(args) {
  timings.renderEvent ??= performance.now();
  spec = args.spec;
  wrap.style.height = `${canvasHeight()}px`;
  sliceType = spec.is_volume ? SLICE_TYPE[spec.plane || "AXIAL"] : SLICE_TYPE.AXIAL;
  await attached;
  nv.opts.isOrientationTextVisible = Boolean(spec.orientation_known);
  nv.opts.showMeasureUnits = spec.spacing_known !== false; // "mm" only where the file gives a spacing
  holdDraws = true;
  try {
    clearTimeout(lod.idleTimer);
    lod.idleTimer = 0;
    if (lod.drawnLevel !== 0) setLevel(0); // a new image opens at full resolution (the draw is held)
    await show(args);
  } finally {
    holdDraws = false;
  }
  nv.drawScene();
  if (firstDrawMs === null) {
    firstDrawMs = performance.now() - t0;
    timings.drawn = performance.now();
  }
  renderStatus();
  setFrameHeight(document.body.scrollHeight);
  loadedId = spec.id;
  document.body.dataset.ready = spec.id;
}

/** Decodes the image and its overlays and puts them on the GPU, the plane and slice set (not drawn). */
async function show(args) {
  const preset = spec.presets[spec.preset_index || 0];
  // decode the image and every overlay at once, then hand them to NiiVue in one update: each
  // addVolume / setOpacity re-renders every layer to the GPU, which costs seconds on a software GL
  const [image, ...layers] = await Promise.all([
    NVImage.loadFromUrl({
      url: args.image,
      name: "image.nii",
      colormap: "gray",
      cal_min: preset.center - preset.width / 2,
      cal_max: preset.center + preset.width / 2,
      trustCalMinMax: true,
    }),
    ...spec.overlays.map((o) =>
      NVImage.loadFromUrl({
        url: args[o.arg],
        name: `${o.arg}.nii`,
        colormap: o.kind === "heat" ? o.colormap : "gray",
        opacity: o.visible ? o.opacity : 0,
        cal_min: o.kind === "heat" ? o.threshold : 0,
        cal_max: 1,
        trustCalMinMax: true,
      }),
    ),
  ]);
  timings.decoded ??= performance.now();
  overlays = spec.overlays.map((o, i) => {
    if (o.kind === "outline") layers[i].setColormapLabel(labelLut(o.color, o.name));
    layers[i].opacity = o.visible ? o.opacity : 0;
    const swatch = o.kind === "outline" ? `rgb(${o.color.join(",")})` : "linear-gradient(90deg,#000,#b5367a,#fca50a,#fcffa4)";
    return { ...o, index: i + 1, swatch };
  });
  // what Niivue.setVolume does for one volume, for all of them (NiiVue 0.69, pinned in package.json)
  nv.volumes = [image, ...layers];
  nv.back = image;
  nv.overlays = layers;
  nv.updateGLVolume();
  timings.uploaded ??= performance.now();
  setTool(tool);
  // a single 2D image has no other plane to point at: no crosshair over it (the Crosshair tool still
  // reads the value under a click)
  nv.opts.crosshairWidth = spec.is_volume ? 0.5 : 0;
  nv.setSliceType(sliceType);
  // start on the slice the page asks for (the AI lesion's), else the middle one
  const s = currentSlices();
  if (spec.start_slice !== null && spec.start_slice !== undefined && s) {
    nv.moveCrosshairInVox(0, 0, spec.start_slice - s.vox[2]);
  }
  lastMeasurement = null;
  buildBar();
}

onRender((args) => {
  if (!args.spec) return;
  if (args.spec.id === loadedId || (loading && loading.id === args.spec.id)) {
    setFrameHeight(document.body.scrollHeight);
    return;
  }
  const id = args.spec.id;
  loading = { id, promise: load(args).catch((err) => showError(`The viewer could not show this image: ${err && err.message ? err.message : err}`)) };
  loading.promise.finally(() => { if (loading && loading.id === id) loading = null; });
});

window.oncolensViewer = {
  get nv() { return nv; },
  state() {
    const s = currentSlices();
    const w = windowOf();
    return {
      ready: loadedId,
      sliceType,
      plane: PLANE_NAME[sliceType] || "Multiplanar",
      vox: s && s.vox,
      dims: s && s.dims,
      window: w,
      overlays: overlays.map((o) => ({ name: o.name, visible: o.visible, opacity: o.opacity })),
      measurementMm: lastMeasurement,
      firstDrawMs,
      timings,
      draws,
      canvas: { width: canvas.width, height: canvas.height, cssWidth: canvas.clientWidth, cssHeight: canvas.clientHeight, dpr: window.devicePixelRatio },
      tiles: nv.screenSlices.length,
      lod: {
        scale: LOD_SCALES[lod.drawnLevel],
        scrollScale: LOD_SCALES[lod.level],
        budgetMs: lod.budgetMs,
        lastFrameMs: lod.lastFrameMs,
        reducedDraws: lod.reducedDraws,
        fullDraws: lod.fullDraws,
        settled: lod.drawnLevel === 0 && !lod.idleTimer && !drawPending,
      },
    };
  },
  scroll,
  /** The scroll frames' budget in ms (tests: 0 draws every scroll frame at the lowest level); the
   * learned level starts again from full resolution. */
  setFrameBudget(ms) {
    lod.budgetMs = ms;
    lod.level = 0;
  },
};

const gl2 = document.createElement("canvas").getContext("webgl2");
if (!gl2) {
  showError("This browser cannot show the viewer (WebGL 2 is off or missing). Turn on hardware acceleration, or use a current Chrome, Edge, Firefox or Safari.");
}
// the canvas at the pages' usual height from the start: the iframe's first size is its last, and
// NiiVue attaches to a canvas of the right size (no resize and redraw when the image arrives)
wrap.style.height = "480px";
timings.ready = performance.now();
ready();
setFrameHeight(document.body.scrollHeight);
// after ``ready``: the page's render event travels while NiiVue attaches (no multisampling: on a
// software GL it halves the frame rate)
const attached = gl2 ? nv.attachToCanvas(canvas, false).then(() => { timings.attached = performance.now(); }) : new Promise(() => {});
timings.attachSync = performance.now(); // the attach's synchronous part (context, shader compiles) is done
