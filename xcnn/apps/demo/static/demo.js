// The draw-a-digit page: pointer events paint the canvas; the canvas goes to the server as a PNG while
// drawing (at most every THROTTLE_MS, one request in flight) and once more when the stroke ends; each
// answer redraws the probability bars, the 28x28 input and the feature maps.
"use strict";

const THROTTLE_MS = 120;
const LINE_WIDTH = 20;  // pixels of the 280-pixel pad: about 2 of MNIST's 20-pixel digit box

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const statusLine = document.getElementById("status");
const prediction = document.getElementById("prediction");

// Test hooks and the page's own bookkeeping: requests sent, answers rendered, the last answer.
const state = { sent: 0, rendered: 0, inflight: false, again: false, lastSend: 0, ink: false, drawing: false,
                info: null, last: null, error: null };
window.xcnnDemo = state;

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  state.ink = false;
}

function padPoint(ev) {
  const r = pad.getBoundingClientRect();
  return [(ev.clientX - r.left) * pad.width / r.width, (ev.clientY - r.top) * pad.height / r.height];
}

function setBusy() {
  document.body.dataset.busy = (state.inflight || state.again || state.drawing) ? "1" : "0";
}

// ---- drawing: pointer events cover mouse, pen and touch alike ----
pad.addEventListener("pointerdown", (ev) => {
  ev.preventDefault();
  if (!state.info) return;  // the model's layers are not known yet
  pad.setPointerCapture(ev.pointerId);
  state.drawing = true;
  const [x, y] = padPoint(ev);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = LINE_WIDTH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.arc(x, y, LINE_WIDTH / 2, 0, 2 * Math.PI);
  ctx.fill();
  ctx.beginPath();
  ctx.moveTo(x, y);
  state.ink = true;
  setBusy();
});

pad.addEventListener("pointermove", (ev) => {
  if (!state.drawing) return;
  ev.preventDefault();
  const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
  for (const e of (events.length ? events : [ev])) {
    const [x, y] = padPoint(e);
    ctx.lineTo(x, y);
  }
  ctx.stroke();
  const [x, y] = padPoint(ev);
  ctx.beginPath();
  ctx.moveTo(x, y);
  if (performance.now() - state.lastSend >= THROTTLE_MS) send();
});

function endStroke(ev) {
  if (!state.drawing) return;
  state.drawing = false;
  send();
  setBusy();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  clearPad();
  state.again = false;
  state.last = null;
  prediction.dataset.class = "";
  document.getElementById("digit").textContent = "–";
  renderBars(null);
  for (const c of document.querySelectorAll("#maps canvas, #seen")) {
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
  }
  statusLine.textContent = "draw with the mouse, a pen or a finger";
  setBusy();
});

// ---- talking to the server ----
function send() {
  if (!state.ink) return;
  if (state.inflight) { state.again = true; setBusy(); return; }  // one in flight; the newest drawing follows
  state.inflight = true;
  state.lastSend = performance.now();
  setBusy();
  pad.toBlob(async (blob) => {
    const seq = ++state.sent;
    try {
      const body = await blob.arrayBuffer();  // bytes rather than a Blob: what devtools (and tests) can see
      const r = await fetch("/api/predict", { method: "POST", headers: { "Content-Type": "image/png" }, body });
      const answer = await r.json();
      if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
      if (state.ink) render(answer, seq);  // a Clear while this was in flight wins
      state.error = null;
    } catch (err) {
      state.error = String(err.message || err);
      statusLine.textContent = `error: ${state.error}`;
    } finally {
      state.inflight = false;
      if (state.again) { state.again = false; send(); }
      setBusy();
    }
  }, "image/png");
}

// ---- drawing the answer ----
function b64bytes(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function paint(canvas, levels, offset, table) {
  const { width: w, height: h } = canvas;
  const img = canvas.getContext("2d").createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const rgb = table[levels[offset + i]];
    img.data[4 * i] = rgb[0]; img.data[4 * i + 1] = rgb[1]; img.data[4 * i + 2] = rgb[2]; img.data[4 * i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
}

const GRAY = Array.from({ length: 256 }, (_, v) => [v, v, v]);

function renderBars(probs) {
  const items = document.querySelectorAll("#bars li");
  const top = probs ? probs.indexOf(Math.max(...probs)) : -1;
  items.forEach((li, k) => {
    const p = probs ? probs[k] : 0;
    li.dataset.p = probs ? String(p) : "";
    li.classList.toggle("top", k === top);
    li.querySelector(".fill").style.width = `${(100 * p).toFixed(2)}%`;
    li.querySelector(".pct").textContent = probs ? `${(100 * p).toFixed(1)} %` : "";
  });
}

function render(answer, seq) {
  state.last = answer;
  state.rendered = seq;
  document.getElementById("digit").textContent = state.info.classes[answer.prediction];
  prediction.dataset.class = String(answer.prediction);
  prediction.dataset.seq = String(seq);
  renderBars(answer.probabilities);
  paint(seen, b64bytes(answer.input), 0, GRAY);
  for (const layer of answer.layers) {
    const levels = b64bytes(layer.data);
    const [C, H, W] = layer.shape;
    const div = [...document.querySelectorAll("#maps .layer")].find((d) => d.dataset.layer === layer.name);
    div.querySelectorAll("canvas").forEach((c, i) => paint(c, levels, i * H * W, state.info.colormaps[layer.cmap]));
    const scale = div.querySelector(".scale");
    scale.textContent = `colour scale ${layer.lo.toFixed(2)} … ${layer.hi.toFixed(2)}`;
  }
  statusLine.textContent = `${answer.ms} ms on the server`;
}

// ---- the page, once the model is known ----
async function start() {
  const info = await (await fetch("/api/info")).json();
  state.info = info;
  document.getElementById("model").textContent =
    `${info.model} (${info.checkpoint}, ${info.parameters.toLocaleString("en")} parameters, ${info.device})`;
  const bars = document.getElementById("bars");
  for (const c of info.classes) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="k"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>`;
    li.querySelector(".k").textContent = c;
    bars.appendChild(li);
  }
  const maps = document.getElementById("maps");
  maps.innerHTML = "<h2>Feature maps of every conv layer and its activation</h2>";
  if (!info.layers.length) {
    const p = document.createElement("p");
    p.className = "none";
    p.textContent = `${info.model} has no convolution layers.`;
    maps.appendChild(p);
  }
  for (const layer of info.layers) {
    const [C, H, W] = layer.shape;
    const div = document.createElement("div");
    div.className = "layer";
    div.dataset.layer = layer.name;
    div.innerHTML = `<h3><b></b> <span>(<i></i>; <span class="scale"></span>)</span></h3><div class="grid"></div>`;
    div.querySelector("h3 b").textContent = layer.name;
    div.querySelector("h3 i").textContent = `${layer.kind}, ${C} maps ${H}×${W}`;
    const grid = div.querySelector(".grid");
    for (let c = 0; c < C; c++) {
      const cv = document.createElement("canvas");
      cv.width = W; cv.height = H;
      cv.title = `${layer.name}, map ${c + 1}`;
      grid.appendChild(cv);
    }
    maps.appendChild(div);
  }
  clearPad();
  document.body.dataset.ready = "1";
}

start().catch((err) => { statusLine.textContent = `error: ${err.message || err}`; });
