<?php
// KCAPTCHA font strips: one RGBA PNG, a marker row on top, glyphs below in alphabet order.

declare(strict_types=1);

final class FontError extends Exception
{
}

/**
 * A loaded strip. For every glyph: its width, its ink as a list of [dx, dy, alpha, blue]
 * (alpha in GD's 0..127, 127 transparent; dy counts from the row below the marker), and per
 * row the leftmost ink pixel, which the no_spaces packing needs.
 */
final class Font
{
    public function __construct(
        public readonly string $name,
        public readonly int $height,
        public readonly array $glyphs,
    ) {
    }
}

/**
 * Resolve the 'fonts' option to font groups: lists of PNG paths, each sorted. A folder is one
 * group; a list holds folders (a group each) and single files (a group of one). Every image
 * first draws a group, then a strip in it, so ["kcaptcha-fonts", "fonts"] draws half of the
 * captchas with KCAPTCHA's three strips however many look-alikes the second folder holds.
 */
function kb_font_groups(string|array $fonts, string $baseDir): array
{
    $abs = fn(string $p) => ($p !== '' && $p[0] === '/') ? $p : $baseDir . '/' . $p;
    $entries = is_string($fonts) ? [$fonts] : $fonts;
    $groups = [];
    foreach ($entries as $entry) {
        if (!is_string($entry)) {
            throw new FontError("'fonts' entries must be paths of folders or PNG files, not " . json_encode($entry));
        }
        $path = $abs($entry);
        if (is_dir($path)) {
            $groups[] = kb_folder_strips($path);
        } elseif (is_string($fonts)) {
            throw new FontError("font folder '$path' does not exist; point 'fonts' at a folder of KCAPTCHA font strips (PNG)");
        } else {
            $groups[] = [$path];
        }
    }
    return $groups;
}

function kb_folder_strips(string $dir): array
{
    $paths = glob($dir . '/*.png') ?: [];
    sort($paths);
    if (!$paths) {
        throw new FontError("font folder '$dir' holds no .png font strips; run tools/make_fonts.py or copy KCAPTCHA fonts there");
    }
    return $paths;
}

/** One strip for the next image: a group, then a strip in it (a draw only where there is a choice). */
function kb_pick_font(array $groups): Font
{
    $group = count($groups) > 1 ? $groups[mt_rand(0, count($groups) - 1)] : $groups[0];
    return count($group) > 1 ? $group[mt_rand(0, count($group) - 1)] : $group[0];
}

function kb_load_font(string $path, string $alphabet): Font
{
    if (!is_file($path)) {
        throw new FontError("font strip '$path' does not exist");
    }
    $img = @imagecreatefrompng($path);
    if ($img === false) {
        throw new FontError("'$path' is not a readable PNG; a font strip is an RGBA PNG with a marker row");
    }
    $w = imagesx($img);
    $h = imagesy($img);
    $runs = kb_marker_runs($img, $w);
    if (count($runs) !== strlen($alphabet) || $h < 12) {
        throw new FontError(sprintf(
            "'%s' is not a KCAPTCHA font strip: row 0 has %d marker runs and the image is %d px tall, "
            . "expected %d runs (one per glyph of '%s') above glyph rows; make strips with tools/make_fonts.py",
            $path, count($runs), $h, strlen($alphabet), $alphabet));
    }
    $glyphs = [];
    foreach ($runs as $i => [$start, $end]) {
        $glyphs[$alphabet[$i]] = kb_read_glyph($img, $start, $end, $h);
    }
    imagedestroy($img);
    return new Font(pathinfo($path, PATHINFO_FILENAME), $h - 1, $glyphs);
}

/** [start, end) column runs of non-transparent pixels in row 0. */
function kb_marker_runs(GdImage $img, int $w): array
{
    $runs = [];
    $start = -1;
    for ($x = 0; $x <= $w; $x++) {
        $opaque = $x < $w && ((imagecolorat($img, $x, 0) >> 24) & 0x7F) !== 127;
        if ($opaque && $start < 0) {
            $start = $x;
        } elseif (!$opaque && $start >= 0) {
            $runs[] = [$start, $x];
            $start = -1;
        }
    }
    return $runs;
}

function kb_read_glyph(GdImage $img, int $start, int $end, int $h): array
{
    $ink = [];
    $leftmost = [];
    for ($y = 1; $y < $h; $y++) {
        for ($x = $start; $x < $end; $x++) {
            $rgba = imagecolorat($img, $x, $y);
            $alpha = ($rgba >> 24) & 0x7F;
            if ($alpha === 127) {
                continue;
            }
            $ink[] = [$x - $start, $y - 1, $alpha, $rgba & 0xFF];
            $leftmost[$y - 1] ??= [$x - $start, $alpha];
        }
    }
    return ['width' => $end - $start, 'ink' => $ink, 'leftmost' => $leftmost];
}
