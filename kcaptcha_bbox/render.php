<?php
// One captcha: answer, glyph placement, noise, wave distortion, and the exact box of every glyph.
//
// The working canvas is a flat array of blue-channel intensities (255 paper, 0 ink), as in
// KCAPTCHA. Beside it we keep, per glyph, the canvas that glyph alone would have made, and a
// bitmask per pixel of the glyphs whose ink is there. The wave step maps every output pixel
// back to four canvas pixels; a glyph owns an output pixel when its lone canvas, pushed through
// that same mapping, would have changed the pixel's colour. That is the box definition itself,
// so the boxes are exact rather than estimated.

declare(strict_types=1);

final class RenderError extends Exception
{
}

const KB_MAX_FIT_TRIES = 1000;
const KB_LENGTH_TRIES = 100;
const KB_MAX_ANSWER_TRIES = 1000;

/**
 * Render image number $index of a batch. Returns [GdImage, annotation, output format].
 * $solo: keep only that glyph's ink and skip the noise (the test of box exactness).
 */
function kb_render(array $cfg, array $fontGroups, int $seed, int $index, bool $track = true, ?int $solo = null): array
{
    mt_srand(kb_image_seed($seed, $index));
    $o = kb_sample_options($cfg);
    [$w, $h] = [$o['width'], $o['height']];

    $length = null;
    for ($try = 0; ; $try++) {
        $font = kb_pick_font($fontGroups);
        // KCAPTCHA draws the length once per image and redraws only answer and font until the
        // text fits (realval kcaptcha21 holds as many 7s as 5s). Where one length cannot fit
        // in KB_LENGTH_TRIES draws, a new one is drawn: kdetect's way out, not the engine's.
        if ($try >= KB_MAX_FIT_TRIES) {
            // The last KB_LENGTH_TRIES draws take the shortest length: on a narrow canvas every
            // length drawn so far can be one too long (train-mix seed 273, image 75118 drew 7
            // and 8 only, in 120 px), and a text fits at the shortest length if at any. Draws
            // before this point are unchanged, so every image that rendered before is the same.
            $length = $o['length'][0];
        } elseif ($length === null || $try % KB_LENGTH_TRIES === 0) {
            $length = mt_rand(...$o['length']);
        }
        $text = kb_answer($o['allowed_symbols'], $length, $o['reject_pairs']);
        $placed = kb_place($o, $font, $text);
        if (!$o['fit'] || $placed['x'] < $w - 10) {
            break;
        }
        if ($try >= KB_MAX_FIT_TRIES + KB_LENGTH_TRIES) {
            throw new RenderError("text never fits: after " . (KB_MAX_FIT_TRIES + KB_LENGTH_TRIES) . " draws no answer of length "
                . json_encode($cfg['length']) . " fitted in width - 10 = " . ($w - 10) . " px; use a shorter "
                . "'length', a larger 'width', 'no_spaces': true, or 'fit': false");
        }
    }
    $canvas = $placed['canvas'];
    kb_noise($canvas, $o, $placed['x']);
    if ($solo !== null) {
        $canvas = array_fill(0, $w * $h, 255);
        foreach ($placed['layers'][$solo] ?? [] as $p => $v) {
            $canvas[$p] = $v;
        }
    }
    $wave = kb_wave($o, $placed['x']);
    $ink = $o['foreground_color'];
    $paper = $o['background_color'];
    $img = imagecreatetruecolor($w, $h + ($o['show_credits'] ? 12 : 0));
    imagefill($img, 0, 0, kb_rgb($paper));
    $boxes = kb_distort($img, $canvas, $track ? $placed : null, $wave, $w, $h, $ink, $paper);
    if ($o['show_credits']) {
        kb_credits($img, $o['credits'], $w, $h, $ink, $paper);
    }
    $ann = [
        'text' => $text,
        'width' => $w,
        'height' => imagesy($img),
        'font' => $font->name,
        'boxes' => array_map(
            fn($b, $ch) => $b === null ? null : [$b[0], $b[1], $b[2] + 1, $b[3] + 1, $ch],
            $boxes, str_split($text)),
    ];
    return [$img, $ann, ['format' => $o['format'], 'jpeg_quality' => $o['jpeg_quality']]];
}

/** A per-image seed from the batch seed, so any worker can render any index identically. */
function kb_image_seed(int $seed, int $index): int
{
    return hexdec(substr(hash('sha256', "kcaptcha_bbox/$seed/$index"), 0, 12)) & 0x7FFFFFFF;
}

function kb_answer(string $symbols, int $length, bool $rejectPairs): string
{
    $n = strlen($symbols) - 1;
    for ($try = 0; $try < KB_MAX_ANSWER_TRIES; $try++) {
        $text = '';
        for ($i = 0; $i < $length; $i++) {
            $text .= $symbols[mt_rand(0, $n)];
        }
        if (!$rejectPairs || !preg_match('/cp|cb|ck|c6|c9|rn|rm|mm|co|do|cl|db|qp|qb|dp|ww/', $text)) {
            return $text;
        }
    }
    throw new RenderError("every answer drawn from '$symbols' contains a rejected pair; add symbols or set 'reject_pairs': false");
}

/** Place the glyphs on a white canvas; returns the canvas, per-glyph lone layers and owners, and final x. */
function kb_place(array $o, Font $font, string $text): array
{
    [$w, $h, $amp] = [$o['width'], $o['height'], $o['fluctuation_amplitude']];
    $canvas = array_fill(0, $w * $h, 255);
    $owner = array_fill(0, $w * $h, 0);
    $layers = [];
    $x = 1;
    $odd = mt_rand(0, 1) ? 1 : -1;
    $jitter = (int)round($amp / 3);
    for ($i = 0, $n = strlen($text); $i < $n; $i++) {
        $glyph = $font->glyphs[$text[$i]];
        $y = (int)((($i % 2) * $amp - $amp / 2) * $odd + mt_rand(-$jitter, $jitter) + ($h - $font->height) / 2);
        $shift = !$o['no_spaces'] ? 1 : ($i === 0 ? 0 : kb_touch_shift($canvas, $glyph, $x, $y, $w, $h, $font->height));
        $left = $x - $shift;
        $layer = [];
        $bit = 1 << $i;
        foreach ($glyph['ink'] as [$dx, $dy, $a, $b]) {
            $cx = $left + $dx;
            $cy = $y + $dy;
            if ($cx < 0 || $cx >= $w || $cy < 0 || $cy >= $h) {
                continue;
            }
            $p = $cy * $w + $cx;
            // GD's alpha blending of the glyph over what is there (alpha 127 = transparent).
            $canvas[$p] = intdiv($canvas[$p] * $a + $b * (127 - $a), 127);
            $layer[$p] = intdiv(255 * $a + $b * (127 - $a), 127);
            $owner[$p] |= $bit;
        }
        $layers[] = $layer;
        $x += $glyph['width'] - $shift;
    }
    return ['canvas' => $canvas, 'owner' => $owner, 'layers' => $layers, 'x' => $x];
}

/**
 * no_spaces: how far left this glyph may move before its leftmost ink, row by row, meets ink
 * already on the canvas. A random 4..6 when no row meets anything.
 */
function kb_touch_shift(array $canvas, array $glyph, int $x, int $y, int $w, int $h, int $fontHeight): int
{
    $shift = PHP_INT_MAX;
    foreach ($glyph['leftmost'] as $dy => [$dx, $alpha]) {
        // Strip rows 3 .. font_height - 11 take part (strip row = $dy + 1, row 0 is the marker).
        if ($dy + 1 < 3 || $dy + 1 > $fontHeight - 11) {
            continue;
        }
        $left = $x + $dx;
        $py = $y + $dy;
        if ($py < 0 || $py >= $h) {
            continue;
        }
        for ($px = min($left, $w - 1); $px > $left - 200 && $px >= 0; $px--) {
            if (($canvas[$py * $w + $px] + $alpha) < 170) {
                $shift = min($shift, $left - $px);
                break;
            }
        }
    }
    return $shift === PHP_INT_MAX ? mt_rand(4, 6) : $shift;
}

/** White then black speckles over the text area; they are not any glyph's ink. */
function kb_noise(array &$canvas, array $o, int $x): void
{
    [$w, $h] = [$o['width'], $o['height']];
    $area = ($h - 30) * $x;
    foreach ([[$o['white_noise_density'], 255], [$o['black_noise_density'], 0]] as [$density, $value]) {
        $count = $area * $density;
        for ($i = 0; $i < $count; $i++) {
            $px = mt_rand(0, $x - 1);
            $py = mt_rand(10, $h - 15);
            if ($px < $w && $py >= 0 && $py < $h) {
                $canvas[$py * $w + $px] = $value;
            }
        }
    }
}

/**
 * The wave as separable lookup tables: the source of output (X, Y) is
 * (sxX[X] + sxY[Y], syX[X] + syY[Y]).
 */
function kb_wave(array $o, int $textEnd): array
{
    [$w, $h] = [$o['width'], $o['height']];
    [$plo, $phi] = $o['wave_period'];
    $p = [kb_uniform($plo, $phi), kb_uniform($plo, $phi), kb_uniform($plo, $phi), kb_uniform($plo, $phi)];
    $f = [kb_uniform(0, M_PI), kb_uniform(0, M_PI), kb_uniform(0, M_PI), kb_uniform(0, M_PI)];
    $ax = $o['wave_x_amplitude'];
    $ay = $o['wave_y_amplitude'];
    if (!$o['wave']) {
        // Gnuboard's switch: centre the text without bending it in x, and barely bend it in y.
        $ax = 0.0;
        $ay = 1.5;
    }
    $centre = $textEnd / 2;
    $t = ['sxX' => [], 'syX' => [], 'sxY' => [], 'syY' => []];
    for ($X = 0; $X < $w; $X++) {
        $t['sxX'][$X] = $X + sin($X * $p[0] + $f[0]) * $ax;
        $t['syX'][$X] = sin($X * $p[1] + $f[2]) * $ay;
    }
    for ($Y = 0; $Y < $h; $Y++) {
        $t['sxY'][$Y] = sin($Y * $p[2] + $f[1]) * $ax - $w / 2 + $centre + 1;
        $t['syY'][$Y] = $Y + sin($Y * $p[3] + $f[3]) * $ay;
    }
    return $t;
}

/**
 * Map the canvas through the wave into $img. With $placed, also returns each glyph's inclusive
 * box [x0, y0, x1, y1] (null for a glyph with no ink left in the output).
 */
function kb_distort(GdImage $img, array $canvas, ?array $placed, array $t, int $w, int $h, array $ink, array $paper): array
{
    $bg = kb_rgb($paper);
    $boxes = $placed ? array_fill(0, count($placed['layers']), null) : [];
    $owner = $placed['owner'] ?? null;
    $layers = $placed['layers'] ?? [];
    $inkBelow = kb_ink_limit($ink, $paper);
    [$sxX, $syX, $sxY, $syY] = [$t['sxX'], $t['syX'], $t['sxY'], $t['syY']];
    for ($Y = 0; $Y < $h; $Y++) {
        $bx = $sxY[$Y];
        $by = $syY[$Y];
        for ($X = 0; $X < $w; $X++) {
            $sx = $sxX[$X] + $bx;
            $sy = $syX[$X] + $by;
            if ($sx < 0 || $sy < 0 || $sx >= $w - 1 || $sy >= $h - 1) {
                continue;
            }
            $ix = (int)$sx;
            $iy = (int)$sy;
            $fx = $sx - $ix;
            $fy = $sy - $iy;
            $p = $iy * $w + $ix;
            $v = kb_sample($canvas[$p], $canvas[$p + 1], $canvas[$p + $w], $canvas[$p + $w + 1], $fx, $fy);
            if ($v !== null) {
                $c = kb_shade($v, $ink, $paper);
                if ($c !== $bg) {
                    imagesetpixel($img, $X, $Y, $c);
                }
            }
            if ($owner === null) {
                continue;
            }
            $mask = $owner[$p] | $owner[$p + 1] | $owner[$p + $w] | $owner[$p + $w + 1];
            for ($g = 0; $mask !== 0; $g++, $mask >>= 1) {
                $b = $boxes[$g];
                // Rows arrive in order, so a pixel inside this row's known span cannot grow the box.
                if (!($mask & 1) || ($b !== null && $b[3] === $Y && $b[0] <= $X && $X <= $b[2])) {
                    continue;
                }
                $l = $layers[$g];
                $l00 = $l[$p] ?? 255;
                $l10 = $l[$p + 1] ?? 255;
                $l01 = $l[$p + $w] ?? 255;
                $l11 = $l[$p + $w + 1] ?? 255;
                if ($l00 + $l10 + $l01 + $l11 === 1020) {
                    continue;
                }
                // kb_sample and kb_shade inlined: this is the hot loop of box tracking.
                $lv = ($l00 * (1 - $fx) + $l10 * $fx) * (1 - $fy) + ($l01 * (1 - $fx) + $l11 * $fx) * $fy;
                if ($lv < $inkBelow) {
                    $boxes[$g] = $b === null ? [$X, $Y, $X, $Y] : [min($b[0], $X), $b[1], max($b[2], $X), $Y];
                }
            }
        }
    }
    return $boxes;
}

/**
 * The least intensity whose shade is the paper colour: a pixel differs from the paper exactly
 * when its intensity is below this. Shading is monotone in the intensity, even in floating
 * point, so bisection finds the boundary exactly.
 */
function kb_ink_limit(array $ink, array $paper): float
{
    $bg = kb_rgb($paper);
    if (kb_shade(0.0, $ink, $paper) === $bg) {
        return 0.0;
    }
    [$lo, $hi] = [0.0, 255.0];
    for ($i = 0; $i < 80; $i++) {
        $mid = ($lo + $hi) / 2;
        if ($mid <= $lo || $mid >= $hi) {
            break;
        }
        kb_shade($mid, $ink, $paper) === $bg ? $hi = $mid : $lo = $mid;
    }
    return $hi;
}

/** Bilinear intensity of four canvas pixels, or null where all four are paper. */
function kb_sample(int $c00, int $c10, int $c01, int $c11, float $fx, float $fy): ?float
{
    if ($c00 === 255 && $c10 === 255 && $c01 === 255 && $c11 === 255) {
        return null;
    }
    $v = ($c00 * (1 - $fx) + $c10 * $fx) * (1 - $fy) + ($c01 * (1 - $fx) + $c11 * $fx) * $fy;
    return min($v, 255.0);
}

/** Colour of intensity $v (0 ink .. 255 paper) as a GD truecolor int. */
function kb_shade(float $v, array $ink, array $paper): int
{
    $k = $v / 255;
    $r = (int)($ink[0] + ($paper[0] - $ink[0]) * $k);
    $g = (int)($ink[1] + ($paper[1] - $ink[1]) * $k);
    $b = (int)($ink[2] + ($paper[2] - $ink[2]) * $k);
    return ($r << 16) | ($g << 8) | $b;
}

function kb_rgb(array $c): int
{
    return ($c[0] << 16) | ($c[1] << 8) | $c[2];
}

/** KCAPTCHA's optional band under the image: the credits string in paper colour on ink. */
function kb_credits(GdImage $img, string $credits, int $w, int $h, array $ink, array $paper): void
{
    imagefilledrectangle($img, 0, $h, $w - 1, $h + 11, kb_rgb($ink));
    $x = (int)(($w - imagefontwidth(2) * strlen($credits)) / 2);
    imagestring($img, 2, max(0, $x), $h - 1, $credits, kb_rgb($paper));
}
