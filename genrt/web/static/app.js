// genrt edit's page: draws strokes on G(z0), asks /api/edit for candidates, shows the morph to the chosen one.
// No build step, no dependency: plain DOM and fetch. Stroke points are fractions of the image (origin top left).
"use strict";

(() => {
  const MAX_STROKES = 64;
  const MAX_POINTS = 512;
  const MIN_STEP = 0.004; // a new point only when the pointer moved this far (a fraction of the image)
  const MORPH_STEPS = 8;
  const SKETCH_COLOUR = "#3fa9ff";
  const CANVAS_SIZE = 320;

  const $ = (selector) => document.querySelector(selector);
  const canvas = $("#canvas");
  const ctx = canvas.getContext("2d");
  const status = $("#status");

  const state = {
    info: null,
    z0: null, // the latent being edited: the start one, or a candidate kept with "Keep editing from it"
    base: null, // an Image of G(z0)
    baseUrl: null,
    photoZ: null, // the projection of the photo: transfer goes from G(photoZ) to the chosen image
    hasPhoto: false,
    tool: "color",
    strokes: [],
    current: null, // the stroke being drawn, or {tool: "eraser"}
    candidates: [],
    chosen: null,
    busy: 0,
    ticket: 0, // the latest morph request: older answers are dropped
  };

  // -- status and requests --------------------------------------------------------------------------------------

  function setStatus(text, error = false) {
    status.textContent = text;
    status.classList.toggle("error", error);
  }

  function describe(code, data) {
    const detail = data && data.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((e) => `${(e.loc || []).slice(1).join(".") || "body"}: ${e.msg}`).join("; ");
    }
    return `the server answered ${code}`;
  }

  async function api(path, body) {
    const options = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const response = await fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) throw new Error(describe(response.status, data));
    return data;
  }

  // Runs an async task with "working…" in #status; its error, if any, goes there instead.
  async function work(task) {
    state.busy += 1;
    setStatus("working…");
    try {
      const result = await task();
      state.busy -= 1;
      if (state.busy === 0) setStatus("ready");
      return result;
    } catch (e) {
      state.busy -= 1;
      setStatus(`error: ${e.message}`, true);
      return undefined;
    }
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => reject(new Error("the server sent an image the browser cannot show"));
      image.src = url;
    });
  }

  // -- drawing ----------------------------------------------------------------------------------------------------

  function rgb(color) {
    return `rgb(${color[0]}, ${color[1]}, ${color[2]})`;
  }

  function hexToRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function pixelWidth(stroke) {
    // Sketch lines are one image pixel wide for the model: show them so.
    const imageWidth = state.info ? state.info.image_size[1] : 32;
    return stroke.tool === "sketch" ? canvas.width / imageWidth : stroke.width * canvas.width;
  }

  function drawStroke(stroke) {
    const pts = stroke.points.map(([x, y]) => [x * canvas.width, y * canvas.height]);
    ctx.save();
    ctx.globalAlpha = 0.85;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = pixelWidth(stroke);
    ctx.strokeStyle = ctx.fillStyle = stroke.tool === "sketch" ? SKETCH_COLOUR : rgb(stroke.color);
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0], pts[0][1], ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.beginPath();
      ctx.moveTo(pts[0][0], pts[0][1]);
      for (const [x, y] of pts.slice(1)) ctx.lineTo(x, y);
      ctx.stroke();
    }
    ctx.restore();
  }

  function redraw() {
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (state.base) ctx.drawImage(state.base, 0, 0, canvas.width, canvas.height);
    for (const stroke of state.strokes) drawStroke(stroke);
    if (state.current && state.current.tool !== "eraser") drawStroke(state.current);
  }

  function fractionOf(event) {
    const rect = canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)];
  }

  function widthFraction() {
    return Number($("#width").value) / 100;
  }

  // The distance in canvas pixels from p to the segment a-b (all three as fractions).
  function distance(p, a, b) {
    const [px, py, ax, ay, bx, by] = [p[0] * canvas.width, p[1] * canvas.height, a[0] * canvas.width,
      a[1] * canvas.height, b[0] * canvas.width, b[1] * canvas.height];
    const dx = bx - ax;
    const dy = by - ay;
    const length2 = dx * dx + dy * dy;
    const t = length2 === 0 ? 0 : Math.min(1, Math.max(0, ((px - ax) * dx + (py - ay) * dy) / length2));
    return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
  }

  function erase(point) {
    const radius = (widthFraction() * canvas.width) / 2;
    const before = state.strokes.length;
    state.strokes = state.strokes.filter((stroke) => {
      const reach = radius + pixelWidth(stroke) / 2;
      const pts = stroke.points;
      for (let i = 0; i < pts.length; i += 1) {
        if (distance(point, pts[i], pts[Math.min(i + 1, pts.length - 1)]) <= reach) return false;
      }
      return true;
    });
    if (state.strokes.length !== before) redraw();
  }

  function begin(event) {
    if (!state.base) return;
    const point = fractionOf(event);
    if (state.tool === "eraser") {
      state.current = { tool: "eraser" };
      erase(point);
      return;
    }
    if (state.strokes.length >= MAX_STROKES) {
      setStatus(`at most ${MAX_STROKES} strokes: erase some first`, true);
      return;
    }
    state.current = {
      tool: state.tool, points: [point], width: widthFraction(), color: hexToRgb($("#color").value),
    };
    redraw();
  }

  function move(event) {
    const stroke = state.current;
    if (!stroke) return;
    const point = fractionOf(event);
    if (stroke.tool === "eraser") {
      erase(point);
      return;
    }
    const last = stroke.points[stroke.points.length - 1];
    if (Math.hypot(point[0] - last[0], point[1] - last[1]) < MIN_STEP) return;
    stroke.points.push(point);
    if (stroke.points.length >= MAX_POINTS) {
      // A long stroke goes on as a new stroke from the same point.
      end();
      if (state.strokes.length < MAX_STROKES) state.current = { ...stroke, points: [point] };
    }
    redraw();
  }

  function end() {
    const stroke = state.current;
    state.current = null;
    if (stroke && stroke.tool !== "eraser") {
      state.strokes.push(stroke);
      redraw();
    }
  }

  // Pointer events where the browser has them (mouse, pen, touch); plain mouse events otherwise. A browser with
  // both sends a mouse event after each pointer event: once a pointer event came, mouse events are ignored.
  let pointerSeen = false;
  canvas.addEventListener("pointerdown", (event) => {
    pointerSeen = true;
    if (event.button !== 0) return;
    if (canvas.setPointerCapture) canvas.setPointerCapture(event.pointerId);
    event.preventDefault();
    begin(event);
  });
  canvas.addEventListener("pointermove", (event) => {
    pointerSeen = true;
    move(event);
  });
  for (const name of ["pointerup", "pointercancel"]) {
    window.addEventListener(name, () => {
      pointerSeen = true;
      end();
    });
  }
  canvas.addEventListener("mousedown", (event) => {
    if (pointerSeen || event.button !== 0) return;
    event.preventDefault();
    begin(event);
  });
  window.addEventListener("mousemove", (event) => {
    if (!pointerSeen) move(event);
  });
  window.addEventListener("mouseup", () => {
    if (!pointerSeen) end();
  });

  // -- tools ------------------------------------------------------------------------------------------------------

  function selectTool(tool) {
    state.tool = tool;
    for (const name of ["color", "sketch", "eraser"]) {
      const button = $(`#tool-${name}`);
      button.classList.toggle("active", name === tool);
      button.setAttribute("aria-pressed", String(name === tool));
    }
  }

  for (const name of ["color", "sketch", "eraser"]) {
    $(`#tool-${name}`).addEventListener("click", () => selectTool(name));
  }
  $("#color").addEventListener("input", () => selectTool("color"));
  $("#width").addEventListener("input", () => {
    $("#width-value").textContent = `${$("#width").value}%`;
  });
  $("#undo").addEventListener("click", () => {
    state.strokes.pop();
    redraw();
  });
  $("#clear").addEventListener("click", () => {
    state.strokes = [];
    redraw();
  });

  // -- the latent being edited, candidates and morph --------------------------------------------------------------

  async function setBase(z, url) {
    state.z0 = z;
    state.baseUrl = url;
    state.base = await loadImage(url);
    canvas.dataset.ready = "true";
    redraw();
  }

  function clearResults() {
    state.candidates = [];
    state.chosen = null;
    state.ticket += 1;
    $("#candidates").replaceChildren();
    $("#morph").replaceChildren();
    $("#accept").disabled = true;
  }

  async function setStart(start) {
    state.strokes = [];
    clearResults();
    state.photoZ = start.photo ? start.z : null;
    state.hasPhoto = Boolean(start.photo);
    const preview = $("#photo-preview");
    preview.hidden = !start.photo;
    if (start.photo) preview.src = start.photo;
    await setBase(start.z, start.image);
  }

  async function choose(index) {
    const candidate = state.candidates[index];
    if (!candidate) return;
    state.chosen = candidate;
    $("#accept").disabled = false;
    document.querySelectorAll("#candidates img.candidate").forEach((img, i) => {
      img.classList.toggle("chosen", i === index);
    });
    const ticket = (state.ticket += 1);
    const morph = $("#morph");
    morph.replaceChildren();
    const data = await api("/api/morph", { z0: state.z0, z1: candidate.z, steps: MORPH_STEPS });
    if (ticket !== state.ticket) return; // another candidate was chosen meanwhile
    morph.replaceChildren(...data.frames.map((url, i) => {
      const img = document.createElement("img");
      img.className = "frame";
      img.src = url;
      img.alt = `morph frame ${i + 1} of ${data.frames.length}`;
      return img;
    }));
  }

  async function generate() {
    const k = state.info ? state.info.k : 4;
    const data = await api("/api/edit", { z0: state.z0, strokes: state.strokes, k });
    clearResults();
    state.candidates = data.candidates;
    $("#candidates").replaceChildren(...data.candidates.map((candidate, i) => {
      const img = document.createElement("img");
      img.className = "candidate";
      img.src = candidate.image;
      img.alt = `candidate ${i + 1}`;
      img.title = candidate.loss === null ? `candidate ${i + 1}` : `candidate ${i + 1}, loss ${candidate.loss.toFixed(4)}`;
      img.addEventListener("click", () => work(() => choose(i)));
      return img;
    }));
    await choose(0);
  }

  $("#generate").addEventListener("click", () => work(generate));

  $("#accept").addEventListener("click", () => work(async () => {
    if (!state.chosen) return;
    const chosen = state.chosen;
    state.strokes = [];
    clearResults();
    await setBase(chosen.z, chosen.image);
  }));

  // -- photo upload and download ----------------------------------------------------------------------------------

  function readAsDataUrl(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
      reader.readAsDataURL(file);
    });
  }

  $("#photo-input").addEventListener("change", (event) => work(async () => {
    const file = event.target.files[0];
    event.target.value = ""; // choosing the same file again fires change again
    if (!file) return;
    if (file.size === 0) throw new Error(`${file.name} is empty`);
    // The server reads the format from the bytes: an unknown type only needs to look like an image's.
    const url = (await readAsDataUrl(file)).replace(/^data:(?!image\/)[^;,]*/, "data:image/unknown");
    await setStart(await api("/api/project", { image: url }));
  }));

  function save(dataUrl, name) {
    const [head, body] = dataUrl.split(",", 2);
    const bytes = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
    const blob = new Blob([bytes], { type: head.slice(5).split(";")[0] });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  $("#download").addEventListener("click", () => work(async () => {
    const z1 = state.chosen ? state.chosen.z : state.z0;
    if (state.hasPhoto) {
      const data = await api("/api/transfer", { z0: state.photoZ, z1 });
      save(data.image, "genrt-edit-photo.png");
    } else {
      save(state.chosen ? state.chosen.image : state.baseUrl, "genrt-edit.png");
    }
  }));

  // -- start ------------------------------------------------------------------------------------------------------

  work(async () => {
    state.info = await api("/api/info");
    const [h, w] = state.info.image_size;
    const scale = Math.max(1, Math.floor(CANVAS_SIZE / Math.max(h, w)));
    canvas.width = w * scale;
    canvas.height = h * scale;
    $("#model-name").textContent = state.info.model;
    document.title = `genrt edit: ${state.info.model}`;
    await setStart(await api("/api/start"));
  });
})();
