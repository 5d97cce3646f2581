// Python/JS parity of both stages: web/decode.js on the raw outputs of vectors.json must read
// what kdetect's Python readers read from them (web/test/make_vectors.py wrote the file; run it
// from the repository root after changing either decoder). Two-stage cases run the pipeline as
// web/app.js does, the glyph reader replaced by the case's table of what each column's crop reads.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  cropCentres, decode, movedBack, pixelShift, proposals, refine, relookCentres, secondLooks, shiftPixels, vote,
} from '../decode.js';

const { cases, shift_votes: shiftVotes } = JSON.parse(readFileSync(new URL('./vectors.json', import.meta.url), 'utf8'));

function assertReading(got, want, what) {
  assert.equal(got.text, want.text, `${what}: text`);
  assert.equal(got.glyphs.length, want.glyphs.length, `${what}: glyphs`);
  got.glyphs.forEach((g, k) => {
    assert.equal(g.char, want.glyphs[k].char, `${what}: glyph ${k}`);
    assert.ok(Math.abs(g.score - want.glyphs[k].score) <= 1e-5 * want.glyphs[k].score + 1e-9,
      `${what}: glyph ${k} score ${g.score}, Python ${want.glyphs[k].score}`);
    g.box.forEach((v, i) => assert.ok(Math.abs(v - want.glyphs[k].box[i]) <= 1e-3,
      `${what}: glyph ${k} box [${g.box}], Python [${want.glyphs[k].box}]`));
  });
  assert.ok(Math.abs(got.confidence - want.confidence) <= 1e-5 * want.confidence + 1e-12, `${what}: confidence`);
}

/** The two stages as web/app.js runs them, `read` standing in for the glyph reader. */
function twoStage(c, guessAlphabet) {
  const read = (columns) => Array.from(columns, (column) => c.table[column]);
  const options = { length: c.length ?? undefined };
  const proposal = proposals(c.outputs, c.meta, c.image_width, c.image_height, options);
  const columns = cropCentres(proposal, c.image_width, c.meta);
  const probs = read(columns);
  const relook = relookCentres(proposal, probs, columns, c.meta, options);
  const second = relook ? secondLooks(read(relook.columns), relook.slots, c.meta) : null;
  const reading = refine(proposal, probs, c.meta, { ...options, columns, second, guessAlphabet });
  return { reading, columns: Array.from(columns), relookColumns: relook ? Array.from(relook.columns) : null };
}

for (const c of cases) {
  test(`reads as Python on vector ${c.name}`, () => {
    for (const guessAlphabet of [true, false]) {
      const want = guessAlphabet ? c.expected : c.expected_without_alphabet_guess;
      const what = `${c.name}${guessAlphabet ? '' : ' without the alphabet guess'}`;
      if (c.stage === 'detector') {
        const options = { guessAlphabet, length: c.length ?? undefined };
        assertReading(decode(c.outputs, c.meta, c.image_width ?? undefined, c.image_height ?? undefined, options),
          want, what);
      } else {
        const got = twoStage(c, guessAlphabet);
        assert.deepEqual(got.columns, c.columns, `${what}: crop centres`);
        assert.deepEqual(got.relookColumns, c.relook_columns, `${what}: second-look columns`);
        assertReading(got.reading, want, what);
      }
    }
  });
}

for (const [k, v] of shiftVotes.entries()) {
  test(`the shift vote's pieces match Python's, vector ${k}`, () => {
    const meta = { input_width: 48, input_height: 16 };
    assert.deepEqual(pixelShift(v.shift, v.size[0], v.size[1], meta), v.pixel_shift);
    assert.deepEqual(Array.from(shiftPixels(v.image, v.width, v.height, v.pixel_shift[0], v.pixel_shift[1])), v.shifted);
    const ballot = v.texts.map((text) => ({
      text, confidence: 0.5, glyphs: [...text].map((char, i) => ({ char, score: 0.5, box: [4 * i, 1, 4 * i + 6, 9] })),
    }));
    assert.equal(ballot.indexOf(vote(ballot)), v.voted);
    assertReading(movedBack(ballot[0], v.pixel_shift[0], v.pixel_shift[1], v.size[0], v.size[1]), v.moved_back, 'moved back');
  });
}
