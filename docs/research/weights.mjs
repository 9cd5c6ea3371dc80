import fs from 'fs';
export function loadWeights(name) {
  const dir = process.env.HOME + '/.cache/weir/npm/human-models/package/models/';
  const j = JSON.parse(fs.readFileSync(dir + name + '.json'));
  const out = {};
  for (const g of j.weightsManifest) {
    const buf = Buffer.concat(g.paths.map(p => fs.readFileSync(dir + p)));
    let off = 0;
    for (const w of g.weights) {
      const n = w.shape.reduce((a, b) => a * b, 1);
      const q = w.quantization;
      let vals;
      if (q && q.dtype === 'float16') {
        vals = new Float32Array(n);
        for (let i = 0; i < n; i++) { const h = buf.readUInt16LE(off + 2 * i); const s = h >> 15, e = (h >> 10) & 31, m = h & 1023; vals[i] = (s ? -1 : 1) * (e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15)); }
        off += 2 * n;
      } else if (q) {
        const bs = q.dtype === 'uint8' ? 1 : 2; vals = new Float32Array(n);
        for (let i = 0; i < n; i++) { const v = bs === 1 ? buf[off + i] : buf.readUInt16LE(off + 2 * i); vals[i] = v * q.scale + q.min; }
        off += bs * n;
      } else if (w.dtype === 'float32') { vals = new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + 4 * n)); off += 4 * n; }
      else if (w.dtype === 'int32') { vals = new Int32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + 4 * n)); off += 4 * n; }
      else if (w.dtype === 'bool') { vals = Uint8Array.from(buf.subarray(off, off + n)); off += n; }
      else throw new Error('dtype ' + w.dtype);
      out[w.name] = { ...w, vals };
    }
    if (off !== buf.length) console.error('size mismatch', off, buf.length);
  }
  return { j, w: out };
}
