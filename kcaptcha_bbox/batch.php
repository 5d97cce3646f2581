<?php
// Batch mode: render images [start, start + count) of a seeded run from a JSON config.
//
//   php batch.php --config FILE --seed S --start I --count N --out DIR [--no-track] [--solo K]
//   php batch.php --config FILE --check
//
// Writes DIR/NNNNNNN.<ext> (to a temporary name, then renamed) and one JSON line per image on
// stdout: {"index", "file", "text", "width", "height", "font", "boxes": [[x0, y0, x1, y1, char], ...]}
// with x1 and y1 exclusive. Errors go to stderr as one line, exit code 2.

declare(strict_types=1);

require __DIR__ . '/config.php';
require __DIR__ . '/fonts.php';
require __DIR__ . '/render.php';

function kb_main(array $argv): int
{
    $args = kb_args($argv);
    if (!function_exists('imagecreatetruecolor')) {
        throw new RenderError('PHP has no GD extension; install it with: apt-get install php-gd');
    }
    $cfg = kb_read_config($args['config']);
    $pathGroups = kb_font_groups($cfg['fonts'], __DIR__);
    $groups = array_map(fn($paths) => array_map(fn($p) => kb_load_font($p, $cfg['alphabet']), $paths), $pathGroups);
    $fonts = array_merge(...$groups);
    $fontPaths = array_merge(...$pathGroups);
    kb_check_fonts_cover($fonts, $cfg);
    if (isset($args['check'])) {
        // Render one image to prove the config can produce text that fits.
        kb_render($cfg, $groups, 0, 0, false);
        $files = array_map(fn($p) => realpath($p), $fontPaths);
        fwrite(STDOUT, json_encode(['ok' => true, 'fonts' => array_map(fn($f) => $f->name, $fonts), 'font_files' => $files]) . "\n");
        return 0;
    }
    foreach (['seed', 'start', 'count', 'out'] as $need) {
        if (!isset($args[$need])) {
            throw new ConfigError("missing --$need");
        }
    }
    $out = $args['out'];
    if (!is_dir($out) && !@mkdir($out, 0777, true)) {
        throw new RenderError("cannot create output folder '$out'");
    }
    $track = !isset($args['no-track']);
    $solo = isset($args['solo']) ? (int)$args['solo'] : null;
    for ($i = (int)$args['start'], $end = $i + (int)$args['count']; $i < $end; $i++) {
        [$img, $ann, $format] = kb_render($cfg, $groups, (int)$args['seed'], $i, $track, $solo);
        $file = sprintf('%07d.%s', $i, ['jpeg' => 'jpg', 'png' => 'png', 'gif' => 'gif'][$format['format']]);
        kb_save($img, "$out/$file", $format);
        fwrite(STDOUT, json_encode(['index' => $i, 'file' => $file] + $ann) . "\n");
    }
    return 0;
}

function kb_args(array $argv): array
{
    $args = [];
    for ($i = 1; $i < count($argv); $i++) {
        $a = $argv[$i];
        if (!str_starts_with($a, '--')) {
            throw new ConfigError("unexpected argument '$a'");
        }
        $key = substr($a, 2);
        $flag = in_array($key, ['check', 'no-track'], true);
        $args[$key] = $flag ? true : ($argv[++$i] ?? throw new ConfigError("--$key needs a value"));
    }
    if (!isset($args['config'])) {
        throw new ConfigError('usage: php batch.php --config FILE (--check | --seed S --start I --count N --out DIR)');
    }
    return $args;
}

function kb_read_config(string $path): array
{
    $text = @file_get_contents($path);
    if ($text === false) {
        throw new ConfigError("cannot read config file '$path'");
    }
    try {
        $cfg = json_decode($text, true, 32, JSON_THROW_ON_ERROR);
    } catch (JsonException $e) {
        throw new ConfigError("config '$path' is not valid JSON: " . $e->getMessage());
    }
    if (!is_array($cfg) || ($cfg && array_is_list($cfg))) {
        throw new ConfigError("config '$path' must be a JSON object of options");
    }
    return kb_load_config($cfg);
}

function kb_check_fonts_cover(array $fonts, array $cfg): void
{
    foreach ($fonts as $font) {
        if (strlen($cfg['alphabet']) !== count($font->glyphs)) {
            throw new FontError("font '{$font->name}' has " . count($font->glyphs) . " glyphs for alphabet '{$cfg['alphabet']}'");
        }
    }
}

function kb_save(GdImage $img, string $path, array $format): void
{
    $tmp = "$path.tmp" . getmypid();
    $ok = match ($format['format']) {
        'jpeg' => imagejpeg($img, $tmp, $format['jpeg_quality']),
        'png' => imagepng($img, $tmp),
        'gif' => imagegif($img, $tmp),
    };
    if (!$ok || !rename($tmp, $path)) {
        @unlink($tmp);
        throw new RenderError("cannot write '$path'");
    }
}

try {
    exit(kb_main($argv));
} catch (ConfigError | FontError | RenderError $e) {
    fwrite(STDERR, 'kcaptcha_bbox: ' . $e->getMessage() . "\n");
    exit(2);
}
