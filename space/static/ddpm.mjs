// The diffusion chain in the browser, on onnxruntime-web (WASM). Every formula runs inside graphs exported from
// ddpm_hub (python -m ddpm_hub.export): step_<sampler>.onnx is guidance plus the scheduler's step, noising.onnx the
// closed form q(x_t | x_0). This file only moves tensors: it reads each step's t and prev_t (and, for display, its
// coefficients) from tables.json, written by the scheduler, and never computes a coefficient itself.
//
//   await window.ddpmHub.ready;
//   const {images, msPerStep} = await window.ddpmHub.generate({label: 3, steps: 100, guidance: 1.5, seed: 0,
//                                                              batch: 4, sampler: "ddpm", noise, onStep, signal});
//
// images: one Float32Array of H*W values in [-1, 1] per image. noise (optional): {xT, z}, x_T (B*H*W values) and
// one z per step that adds noise (DDPM: every step but the last; DDIM with eta = 0: none), in the order the Python
// pipeline draws them from its generator, so both sides can run the same draws.

import * as ort from "./ort/ort.wasm.min.mjs";

const params = new URLSearchParams(location.search);
ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
// Threads need SharedArrayBuffer, which only a cross-origin isolated page has (COOP/COEP headers, see README.md).
const maxThreads = self.crossOriginIsolated ? Math.min(navigator.hardwareConcurrency || 1, 4) : 1;
ort.env.wasm.numThreads = Math.max(1, Math.min(Number(params.get("threads") || maxThreads), maxThreads));

const sessions = new Map();
let tables = null;

function session(file) {
  if (!sessions.has(file)) {
    sessions.set(file, ort.InferenceSession.create(new URL(`./model/${file}`, import.meta.url).href, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    }));
  }
  return sessions.get(file);
}

// A seeded N(0, 1) stream (mulberry32 + Box-Muller): reproducible in the page, not torch's generator.
function normalStream(seed) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let r = Math.imul(state ^ (state >>> 15), 1 | state);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
  return (n) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u = 1 - uniform();
      const radius = Math.sqrt(-2 * Math.log(u));
      const angle = 2 * Math.PI * uniform();
      out[i] = radius * Math.cos(angle);
      if (i + 1 < n) out[i + 1] = radius * Math.sin(angle);
    }
    return out;
  };
}

function asFloat32(values, n, what) {
  const array = values instanceof Float32Array ? values : Float32Array.from(values);
  if (array.length !== n) throw new Error(`${what} must have ${n} values (batch x H x W), got ${array.length}`);
  return array;
}

const int64 = (values) => new ort.Tensor("int64", BigInt64Array.from(values.map((v) => BigInt(v))), [values.length]);

async function loadTables() {
  const response = await fetch(new URL("./model/tables.json", import.meta.url));
  if (!response.ok) throw new Error(`model/tables.json: HTTP ${response.status}`);
  return response.json();
}

/** Step counts the page offers for `sampler`, from the scheduler's tables. */
function stepCounts(sampler) {
  const entry = tables.samplers[sampler];
  if (!entry) throw new Error(`sampler must be one of ${Object.keys(tables.samplers).join(", ")}, got ${sampler}`);
  return Object.keys(entry.steps).map(Number).sort((a, b) => b - a);
}

async function generate({
  label = 0, steps, guidance, seed = 0, batch = 1, sampler = "ddpm", noise = null, onStep = null, signal = null,
} = {}) {
  await ready;
  const model = tables.model;
  const rows = tables.samplers[sampler]?.steps[String(steps)];
  if (!rows) {
    throw new Error(`steps must be one of ${stepCounts(sampler).join(", ")} for ${sampler}, got ${steps}`);
  }
  const labels = Array.isArray(label) ? label : Array(batch).fill(label);
  if (labels.length !== batch || !labels.every((l) => Number.isInteger(l) && l >= 0 && l < model.num_classes)) {
    throw new Error(`label must be ${batch} integer(s) in [0, ${model.num_classes - 1}], got ${label}`);
  }
  const w = guidance ?? model.guidance_scale; // the model's recorded w
  const size = model.channels * model.sample_size * model.sample_size;
  const shape = [batch, model.channels, model.sample_size, model.sample_size];
  const draw = normalStream(seed);
  let x = noise ? asFloat32(noise.xT, batch * size, "noise.xT") : draw(batch * size); // x_T
  const graph = await session(tables.samplers[sampler].file);
  const inputs = new Set(graph.inputNames);
  const fixed = {
    class_labels: int64(labels),
    guidance_scale: new ort.Tensor("float32", Float32Array.of(w), [1]),
  };
  let zIndex = 0;
  let elapsed = 0;
  for (let i = 0; i < rows.length; i++) {
    if (signal?.aborted) throw new DOMException("stopped", "AbortError");
    const row = rows[i];
    const feeds = {
      ...fixed,
      sample: new ort.Tensor("float32", x, shape),
      timestep: int64([row.t]),
      prev_timestep: int64([row.prev_t]),
    };
    if (inputs.has("noise")) {
      // the pipeline draws z only for steps that add noise (not the last one)
      let z = new Float32Array(batch * size);
      if (row.prev_t >= 0) z = noise ? asFloat32(noise.z[zIndex], batch * size, `noise.z[${zIndex}]`) : draw(batch * size);
      if (row.prev_t >= 0) zIndex++;
      feeds.noise = new ort.Tensor("float32", z, shape);
    }
    const start = performance.now();
    const out = await graph.run(feeds);
    elapsed += performance.now() - start;
    const sample = x;
    x = out.prev_sample.data;
    if (onStep) {
      await onStep({
        index: i, numSteps: rows.length, row, sample,
        predOriginalSample: out.pred_original_sample.data, predEpsilon: out.pred_epsilon.data, prevSample: x,
        msPerStep: elapsed / (i + 1),
      });
    }
  }
  const images = [];
  for (let b = 0; b < batch; b++) {
    images.push(x.slice(b * size, (b + 1) * size).map((v) => Math.min(1, Math.max(-1, v))));
  }
  return { images, msPerStep: elapsed / rows.length };
}

/** x_t ~ q(x_t | x_0) for one image x0 (H*W values in [-1, 1]) at t, with the noise `eps` (or a seeded draw). */
async function noise({ x0, t, seed = 0, eps = null }) {
  await ready;
  const model = tables.model;
  const size = model.channels * model.sample_size * model.sample_size;
  const shape = [1, model.channels, model.sample_size, model.sample_size];
  const e = eps ? asFloat32(eps, size, "eps") : normalStream(seed)(size);
  const graph = await session(tables.noising.file);
  const out = await graph.run({
    sample: new ort.Tensor("float32", asFloat32(x0, size, "x0"), shape),
    timestep: int64([t]),
    noise: new ort.Tensor("float32", e, shape),
  });
  return { xt: out.noisy.data, eps: e };
}

const ready = (async () => {
  tables = await loadTables();
  await session(tables.samplers.ddpm.file); // the default sampler's graph; DDIM's loads when first asked for
  return { threads: ort.env.wasm.numThreads, crossOriginIsolated: self.crossOriginIsolated };
})();

window.ddpmHub = { ready, generate, noise, stepCounts, get tables() { return tables; } };
