// The page's controls and pictures, on window.ddpmHub (ddpm.mjs). Numbers shown beside each step are read from the
// scheduler's tables (tables.json); nothing here computes a coefficient.
const hub = window.ddpmHub;
const $ = (id) => document.getElementById(id);
const fmt = (v) => (v === null || v === undefined ? "–" : Math.abs(v) >= 1e-3 || v === 0 ? v.toFixed(4) : v.toExponential(2));

// Two scales, stated in the page's captions: images (x_0, x_t, x̂_0) as pixels in [-1, 1]; noise (ε, ε̂) in [-3, 3].
const IMAGE = [-1, 1];
const NOISE = [-3, 3];

/** Draws H*W values onto a 28x28 canvas: [lo, hi] -> black..white (values beyond clipped). */
function draw(canvas, values, lo = -1, hi = 1) {
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < values.length; i++) {
    const v = Math.round(((values[i] - lo) / (hi - lo)) * 255);
    const c = Math.max(0, Math.min(255, v));
    image.data.set([c, c, c, 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
}

let digits = null;
let running = null;

function fillSteps() {
  const sampler = $("sampler").value;
  const defaults = { ddpm: 100, ddim: 50 };
  $("steps").replaceChildren(...hub.stepCounts(sampler).map((n) => new Option(n, n, false, n === defaults[sampler])));
}

async function showForward() {
  const image = digits.images[Number($("fwd-digit").value)];
  const x0 = Float32Array.from(image, (v) => (v / 255) * 2 - 1);
  const t = Number($("fwd-t").value);
  $("fwd-t-value").textContent = t;
  const { xt, eps } = await hub.noise({ x0, t, seed: 0 });
  draw($("fwd-x0"), x0);
  draw($("fwd-eps"), eps, ...NOISE);
  draw($("fwd-xt"), xt, ...IMAGE);
  const n = hub.tables.noising;
  $("fwd-coefficients").textContent =
    `x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε,  ᾱ_t = ${fmt(n.alpha_bar_t[t])},  √ᾱ_t = ${fmt(n.sqrt_alpha_bar_t[t])},  ` +
    `√(1−ᾱ_t) = ${fmt(n.sqrt_one_minus_alpha_bar_t[t])},  SNR = ${fmt(n.snr_t[t])}`;
}

async function generate() {
  const controller = new AbortController();
  running = controller;
  $("generate").disabled = true;
  $("stop").disabled = false;
  $("results").replaceChildren();
  const options = {
    label: Number($("digit").value), guidance: Number($("guidance").value), sampler: $("sampler").value,
    steps: Number($("steps").value), seed: Number($("seed").value),
    batch: Math.max(1, Math.min(8, Number($("batch").value) || 1)), signal: controller.signal,
  };
  let lastPaint = 0;
  options.onStep = async (s) => {
    const now = performance.now();
    if (now - lastPaint < 50 && s.index + 1 < s.numSteps) return; // stream at most ~20 frames a second
    lastPaint = now;
    draw($("rev-xt"), s.sample.subarray(0, 784), ...IMAGE);
    draw($("rev-x0"), s.predOriginalSample.subarray(0, 784), ...IMAGE);
    draw($("rev-eps"), s.predEpsilon.subarray(0, 784), ...NOISE);
    const r = s.row;
    $("progress").textContent = `step ${s.index + 1} / ${s.numSteps}, t = ${r.t} → ${r.prev_t < 0 ? "x₀ (the last step)" : r.prev_t}, ` +
      `${s.msPerStep.toFixed(1)} ms per step`;
    $("coefficients").textContent = `ᾱ_t = ${fmt(r.alpha_bar_t)},  ᾱ_prev = ${fmt(r.alpha_bar_prev)},  ` +
      `β = ${fmt(r.beta)},  β̃ = ${fmt(r.beta_tilde)},  σ_t = ${fmt(r.sigma)}`;
    await new Promise((resolve) => requestAnimationFrame(resolve));
  };
  try {
    const { images, msPerStep } = await hub.generate(options);
    for (const image of images) {
      const canvas = Object.assign(document.createElement("canvas"), { width: 28, height: 28 });
      draw(canvas, image);
      $("results").append(canvas);
    }
    $("progress").textContent += ` — done (${msPerStep.toFixed(1)} ms per step)`;
  } catch (err) {
    $("progress").textContent = err.name === "AbortError" ? "stopped" : `error: ${err.message}`;
  } finally {
    running = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

async function main() {
  const info = await hub.ready;
  digits = await (await fetch("./digits.json")).json();
  const labels = digits.labels.map((l, i) => new Option(`${l} (real #${i + 1})`, i));
  $("fwd-digit").replaceChildren(...labels);
  $("digit").replaceChildren(...Array.from({ length: hub.tables.model.num_classes }, (_, d) => new Option(d, d)));
  $("guidance").value = hub.tables.model.guidance_scale;
  fillSteps();
  $("sampler").addEventListener("change", fillSteps);
  $("fwd-digit").addEventListener("change", showForward);
  $("fwd-t").addEventListener("input", showForward);
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", () => running?.abort());
  $("generate").disabled = false;
  $("status").textContent = `Ready: WASM, ${info.threads} thread(s)` +
    (info.crossOriginIsolated ? "." : " (not cross-origin isolated, so no threads).");
  await showForward();
}

main().catch((err) => { $("status").textContent = `Could not start: ${err.message}`; });
