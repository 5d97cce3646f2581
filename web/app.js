// The demo page: load the exported model, read an image the user drops, pastes or picks, and
// show the answer with its boxes. TF.js comes from the <script> tag in index.html (global `tf`).
//
// document.body.dataset.state: "loading" (model loading or an image being read), "ready"
// (waiting for an image), "done" (a result is shown), "error" (see #status; dataset.error says
// which: "no-tfjs", "no-model", "bad-model", "image").

import {
  cropCentres, decode, decodeClassifier, movedBack, pixelShift, proposals, refine, relookCentres, secondLooks,
  shiftPixels, vote,
} from './decode.js';

const MODEL_URL = 'model/model.json';
const META_URL = 'model/metadata.json';
const GLYPHS_URL = 'model/glyphs/model.json'; // the second stage, where metadata.glyphs says there is one
const FORMAT = 'kdetect-tfjs-1';

const $ = (id) => document.getElementById(id);
let model = null;
let glyphModel = null;
let meta = null;
let busy = false;

class PageError extends Error {
  constructor(kind, html) {
    super(html.replace(/<[^>]+>/g, ''));
    this.kind = kind;
    this.html = html;
  }
}

function setState(state) {
  document.body.dataset.state = state;
  if (state !== 'error') delete document.body.dataset.error;
}

function setStatus(html) {
  $('status').innerHTML = html;
}

function fail(err) {
  // Expected conditions (no model yet, a bad file) are warnings; anything else is a bug.
  if (err instanceof PageError) console.warn(err.message);
  else console.error(err);
  setState('error');
  document.body.dataset.error = err.kind || 'internal';
  setStatus(err.html || `Error: ${escapeHtml(String(err.message || err))}`);
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const EXPORT_HINT = 'Export one from the repository root with <code>kdetect export tfjs --out web/model</code>, then reload this page.';

const WASM_DIR = 'node_modules/@tensorflow/tfjs-backend-wasm/dist/';

/** WebAssembly first: for a model this small it beats WebGL on most machines and it is the
 * only fast choice where there is no GPU (WebGL then runs in software). `?backend=NAME` in the
 * page URL forces one (wasm, webgl, cpu). Returns the backend in use. */
async function pickBackend() {
  if (tf.wasm) tf.wasm.setWasmPaths(WASM_DIR);
  const wanted = new URLSearchParams(window.location.search).get('backend');
  for (const name of wanted ? [wanted] : ['wasm', 'webgl', 'cpu']) {
    try {
      if (await tf.setBackend(name)) return tf.getBackend();
    } catch (err) {
      console.warn(`TF.js backend ${name} is not available: ${err.message || err}`);
    }
  }
  throw new PageError('no-tfjs', `No TF.js backend could start${wanted ? ` (asked for ${escapeHtml(wanted)})` : ''}.`);
}

async function fetchJson(url) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-cache' });
  } catch (err) {
    return null; // network error, or file:// where fetch is not allowed
  }
  if (!response.ok) return null;
  try {
    return await response.json();
  } catch (err) {
    throw new PageError('bad-model', `<code>${url}</code> is not valid JSON. ${EXPORT_HINT}`);
  }
}

async function loadModel() {
  if (typeof tf === 'undefined') {
    throw new PageError('no-tfjs', 'TF.js did not load from <code>node_modules/@tensorflow/tfjs</code>: '
      + 'run <code>npm install</code> in <code>web/</code> and reload.');
  }
  $('backend').textContent = await pickBackend();

  const [metadata, graph] = await Promise.all([fetchJson(META_URL), fetchJson(MODEL_URL)]);
  if (!metadata || !graph) {
    const missing = [!graph && MODEL_URL, !metadata && META_URL].filter(Boolean).map((u) => `<code>${u}</code>`);
    throw new PageError('no-model', `No model found: ${missing.join(' and ')} could not be loaded. ${EXPORT_HINT}`);
  }
  if (metadata.format !== FORMAT || !['detector', 'classifier'].includes(metadata.kind)) {
    throw new PageError('bad-model', `<code>${META_URL}</code> is not a kdetect export `
      + `(format ${escapeHtml(String(metadata.format))}, kind ${escapeHtml(String(metadata.kind))}; `
      + `expected ${FORMAT}, detector or classifier). ${EXPORT_HINT}`);
  }
  meta = metadata;
  model = await tf.loadGraphModel(MODEL_URL);
  if (meta.glyphs) glyphModel = await tf.loadGraphModel(GLYPHS_URL);

  // One warm-up run so the first timed image does not pay for shader compilation.
  const warm = tf.zeros([1, meta.input_height, meta.input_width, 3]);
  try {
    const out = await runGraph(model, warm);
    tf.dispose(out);
    if (glyphModel) {
      const centres = tf.zeros([1, 1], 'int32');
      tf.dispose(await runGraph(glyphModel, { image: warm, centres }));
      centres.dispose();
    }
  } finally {
    warm.dispose();
  }
}

/** Runs the graph; `execute` when it can, `executeAsync` for graphs with control flow. */
async function runGraph(graph, input) {
  try {
    return graph.execute(input);
  } catch (err) {
    if (/executeAsync/.test(String(err && err.message))) return graph.executeAsync(input);
    throw err;
  }
}

/** A graph's result -> its outputs as {data, shape} (decode.js matches them to scales by grid
 * shape), read back from the accelerator and disposed. */
async function readBack(result) {
  const tensors = Array.isArray(result) ? result : [result];
  try {
    return await Promise.all(tensors.map(async (t) => ({ data: await t.data(), shape: t.shape })));
  } finally {
    tf.dispose(tensors);
  }
}

/** The glyph reader's outputs for crops of the input around the columns (an Int32Array). */
async function readGlyphs(input, columns) {
  const centres = tf.tensor2d(columns, [1, columns.length], 'int32');
  try {
    return await readBack(await runGraph(glyphModel, { image: input, centres }));
  } finally {
    centres.dispose();
  }
}

/** A float input [1, H, W, 3] of a width x height image -> its reading by the package's stages. */
async function readInput(input, width, height) {
  const outputs = await readBack(await runGraph(model, input));
  if (meta.kind === 'classifier') return decodeClassifier(outputs[0], meta);
  if (!glyphModel) return decode(outputs, meta, width, height);
  const proposal = proposals(outputs, meta, width, height);
  const columns = cropCentres(proposal, width, meta);
  const [probs] = await readGlyphs(input, columns);
  // The second look: proposals the first look dropped, read again a few columns aside.
  const relook = relookCentres(proposal, probs, columns, meta);
  const second = relook ? secondLooks((await readGlyphs(input, relook.columns))[0], relook.slots, meta) : null;
  return refine(proposal, probs, meta, { columns, second });
}

/** Image -> {reading, ms}: the answer and the milliseconds taken by both stages, reading the
 * outputs back from the accelerator included. An unsure reading is read again at the package's
 * vote shifts and the answer most readings give wins (decode.js vote, as kdetect's Python does). */
async function infer(image) {
  const start = performance.now();
  const width = image.naturalWidth;
  const height = image.naturalHeight;
  const pixels = tf.browser.fromPixels(image);
  const input = tf.tidy(() => pixels.toFloat().expandDims(0));
  try {
    let reading = await readInput(input, width, height);
    const g = meta.glyphs;
    if (g && g.vote_shifts && g.vote_shifts.length && reading.confidence < g.vote_below) {
      const data = await pixels.data();
      const ballot = [reading];
      for (const [n, shift] of g.vote_shifts.entries()) {
        // Settled: its readings all agree after the first vote_settle_after shifts.
        if (n && n === g.vote_settle_after && ballot.every((r) => r.text === reading.text)) break;
        const [dx, dy] = pixelShift(shift, width, height, meta);
        const moved = tf.tensor4d(shiftPixels(data, width, height, dx, dy), [1, height, width, 3], 'float32');
        try {
          ballot.push(movedBack(await readInput(moved, width, height), dx, dy, width, height));
        } finally {
          moved.dispose();
        }
      }
      reading = vote(ballot);
    }
    return { reading, ms: performance.now() - start };
  } finally {
    input.dispose();
    pixels.dispose();
  }
}

function loadImage(blob) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.onload = () => {
      URL.revokeObjectURL(url);
      resolve(img);
    };
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new PageError('image', 'That file could not be read as an image.'));
    };
    img.src = url;
  });
}

function draw(image, reading) {
  const w = image.naturalWidth;
  const h = image.naturalHeight;
  // Captchas are small: draw them enlarged so boxes and labels stay legible.
  const k = Math.max(1, Math.min(4, Math.floor(640 / w)));
  const canvas = $('canvas');
  canvas.width = w * k;
  canvas.height = h * k;
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(image, 0, 0, w * k, h * k);
  ctx.lineWidth = 2;
  ctx.font = `bold ${Math.max(12, 4 * k + 4)}px ui-monospace, monospace`;
  ctx.textBaseline = 'top';
  reading.glyphs.forEach((g, i) => {
    if (!g.box) return; // the classifier baseline has no boxes
    const [x0, y0, x1, y1] = g.box.map((v) => v * k);
    const colour = `hsl(${(i * 67) % 360}, 85%, 40%)`;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const label = g.char;
    const tw = ctx.measureText(label).width + 6;
    const th = Math.max(12, 4 * k + 4) + 4;
    const ly = y0 >= th ? y0 - th : y1; // above the box, or below when there is no room
    ctx.fillStyle = colour;
    ctx.fillRect(x0, Math.min(ly, canvas.height - th), tw, th);
    ctx.fillStyle = '#fff';
    ctx.fillText(label, x0 + 3, Math.min(ly, canvas.height - th) + 2);
  });
}

function show(reading, ms) {
  $('answer').textContent = reading.text || '(nothing found)';
  $('confidence').textContent = `${(reading.confidence * 100).toFixed(1)}%`;
  $('time').textContent = ms.toFixed(1);
  const rows = reading.glyphs.map((g, i) => {
    const tr = document.createElement('tr');
    const cells = [String(i + 1), g.char, g.score.toFixed(3), g.box ? g.box.map((v) => v.toFixed(1)).join(', ') : '(none)'];
    cells.forEach((text, c) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (c !== 1) td.className = 'num';
      tr.appendChild(td);
    });
    return tr;
  });
  $('glyphs').replaceChildren(...rows);
}

async function read(blob) {
  if (!model || busy) return;
  if (blob.type && !blob.type.startsWith('image/')) {
    fail(new PageError('image', `That is not an image (${escapeHtml(blob.type)}).`));
    return;
  }
  busy = true;
  setState('loading');
  setStatus('Reading&hellip;');
  try {
    const image = await loadImage(blob);
    const { reading, ms } = await infer(image);
    draw(image, reading);
    show(reading, ms);
    setStatus(`Read a ${image.naturalWidth}&times;${image.naturalHeight} image. Drop, paste or pick another.`);
    setState('done');
  } catch (err) {
    fail(err);
  } finally {
    busy = false;
  }
}

function firstImage(items) {
  for (const item of items || []) {
    const file = item instanceof File ? item : item.kind === 'file' ? item.getAsFile() : null;
    if (file && file.type.startsWith('image/')) return file;
  }
  return null;
}

function wireInputs() {
  const fileInput = $('file');
  fileInput.disabled = false;
  fileInput.addEventListener('change', () => {
    if (fileInput.files.length) read(fileInput.files[0]);
  });

  const drop = $('drop');
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  document.addEventListener('dragleave', (e) => {
    if (e.relatedTarget === null) drop.classList.remove('over');
  });
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const file = firstImage(e.dataTransfer && e.dataTransfer.files);
    if (file) read(file);
  });

  document.addEventListener('paste', (e) => {
    const file = firstImage(e.clipboardData && e.clipboardData.items);
    if (file) {
      e.preventDefault();
      read(file);
    }
  });
}

/** Reads the image at url (anything the page can fetch) without touching the page: the hook
 * that browser tests and bench/bench_browser.py drive, through the same steps as the page. */
async function readUrl(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const image = await loadImage(await response.blob());
  const { reading, ms } = await infer(image);
  return { ...reading, ms };
}

async function main() {
  setState('loading');
  setStatus('Loading the model&hellip;');
  try {
    await loadModel();
  } catch (err) {
    fail(err);
    return;
  }
  wireInputs();
  window.kdetect = { readUrl, backend: tf.getBackend(), metadata: meta };
  setStatus('Ready: drop, paste or pick a captcha image.');
  setState('ready');
}

main();
