<?php
// Render configuration: defaults, validation and per-image sampling.
//
// Every option may be given as a plain value, or as {"choice": [v, ...]} to pick one value per
// image. Numeric options also take [lo, hi] for a uniform draw per image (integers for the
// integer options). Colours are [r, g, b] or [[rlo, rhi], [glo, ghi], [blo, bhi]].

declare(strict_types=1);

const KB_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

// KCAPTCHA 2.1's defaults: a preset only lists what differs.
const KB_DEFAULTS = [
    'alphabet' => KB_ALPHABET,
    'allowed_symbols' => '23456789abcdegikpqsvxyz',
    'length' => [5, 7],
    'width' => 160,
    'height' => 80,
    'fluctuation_amplitude' => 8,
    'white_noise_density' => 0.16666667,
    'black_noise_density' => 0.03333333,
    'no_spaces' => true,
    'show_credits' => false,
    'credits' => 'www.captcha.ru',
    'foreground_color' => [[0, 80], [0, 80], [0, 80]],
    'background_color' => [[220, 255], [220, 255], [220, 255]],
    'jpeg_quality' => 90,
    'format' => 'jpeg',
    'wave' => true,
    'fit' => true,
    'reject_pairs' => true,
    'wave_period' => [0.075, 0.12],
    'wave_x_amplitude' => [3.0, 3.82],
    'wave_y_amplitude' => [3.3, 4.5],
    'fonts' => 'fonts',
];

const KB_INT_KEYS = ['length', 'width', 'height', 'fluctuation_amplitude', 'jpeg_quality'];
const KB_FLOAT_KEYS = ['white_noise_density', 'black_noise_density', 'wave_period',
    'wave_x_amplitude', 'wave_y_amplitude'];
const KB_BOOL_KEYS = ['no_spaces', 'show_credits', 'wave', 'fit', 'reject_pairs'];
const KB_COLOR_KEYS = ['foreground_color', 'background_color'];
const KB_STRING_KEYS = ['allowed_symbols', 'credits', 'format'];
// Chosen once per run, never per image: the glyph order must match every font strip.
const KB_FIXED_KEYS = ['alphabet', 'fonts'];

// Pairs a human would confuse; KCAPTCHA redraws answers that contain them.
const KB_REJECTED_PAIRS = ['cp', 'cb', 'ck', 'c6', 'c9', 'rn', 'rm', 'mm', 'co', 'do', 'cl', 'db',
    'qp', 'qb', 'dp', 'ww'];

final class ConfigError extends Exception
{
}

/** Merge a user config over the defaults and check every key; throws ConfigError. */
function kb_load_config(array $user): array
{
    $known = array_keys(KB_DEFAULTS);
    foreach (array_keys($user) as $key) {
        if ($key === 'name' || $key === 'description') {
            continue;
        }
        if (!in_array($key, $known, true)) {
            $near = kb_nearest((string)$key, $known);
            throw new ConfigError("unknown config key '$key'" . ($near ? " (did you mean '$near'?)" : '')
                . '; known keys: ' . implode(', ', $known));
        }
    }
    $cfg = array_merge(KB_DEFAULTS, array_diff_key($user, ['name' => 1, 'description' => 1]));
    foreach ($cfg as $key => $value) {
        if (in_array($key, KB_FIXED_KEYS, true)) {
            continue;
        }
        foreach (kb_alternatives($key, $value) as $alt) {
            kb_check_value($key, $alt, $cfg['alphabet']);
        }
    }
    if (!is_string($cfg['alphabet']) || strlen($cfg['alphabet']) < 2) {
        throw new ConfigError("'alphabet' must be the glyph order of the font strips, e.g. '" . KB_ALPHABET . "'");
    }
    if (!is_string($cfg['fonts']) && !(is_array($cfg['fonts']) && $cfg['fonts'])) {
        throw new ConfigError("'fonts' must be a folder of font strips or a non-empty list of PNG files");
    }
    return $cfg;
}

/** The values an option can take per image: the choice list, or the value itself. */
function kb_alternatives(string $key, mixed $value): array
{
    if (is_array($value) && array_key_exists('choice', $value)) {
        if (count($value) !== 1 || !is_array($value['choice']) || !$value['choice'] || !array_is_list($value['choice'])) {
            throw new ConfigError("'$key': {\"choice\": [...]} needs a non-empty list and no other keys");
        }
        return $value['choice'];
    }
    return [$value];
}

function kb_check_value(string $key, mixed $v, string $alphabet): void
{
    if (in_array($key, KB_INT_KEYS, true) || in_array($key, KB_FLOAT_KEYS, true)) {
        $int = in_array($key, KB_INT_KEYS, true);
        $range = is_array($v) ? $v : [$v, $v];
        $ok = array_is_list($range) && count($range) === 2;
        foreach ($ok ? $range : [] as $x) {
            $ok = $ok && ($int ? is_int($x) : (is_int($x) || is_float($x)));
        }
        if (!$ok || $range[0] > $range[1]) {
            $kind = $int ? 'an integer' : 'a number';
            throw new ConfigError("'$key' must be $kind or a range [lo, hi] with lo <= hi, got " . json_encode($v));
        }
        [$lo, $hi] = $range;
        $limits = ['length' => [1, 60], 'width' => [20, 2000], 'height' => [30, 1000],
            'fluctuation_amplitude' => [0, 100], 'jpeg_quality' => [1, 100],
            'white_noise_density' => [0, 1], 'black_noise_density' => [0, 1],
            'wave_period' => [0, 10], 'wave_x_amplitude' => [0, 100], 'wave_y_amplitude' => [0, 100]];
        [$min, $max] = $limits[$key];
        if ($lo < $min || $hi > $max) {
            throw new ConfigError("'$key' must lie in [$min, $max], got " . json_encode($v));
        }
    } elseif (in_array($key, KB_BOOL_KEYS, true)) {
        if (!is_bool($v)) {
            throw new ConfigError("'$key' must be true or false (or {\"choice\": [true, false]}), got " . json_encode($v));
        }
    } elseif (in_array($key, KB_COLOR_KEYS, true)) {
        kb_check_color($key, $v);
    } elseif ($key === 'allowed_symbols') {
        if (!is_string($v) || $v === '') {
            throw new ConfigError("'allowed_symbols' must be a non-empty string of characters");
        }
        foreach (str_split($v) as $ch) {
            if (strpos($alphabet, $ch) === false) {
                throw new ConfigError("allowed symbol '$ch' is not in the font alphabet '$alphabet'; remove it from 'allowed_symbols'");
            }
        }
    } elseif ($key === 'format') {
        if (!in_array($v, ['jpeg', 'png', 'gif'], true)) {
            throw new ConfigError("'format' must be 'jpeg', 'png' or 'gif', got " . json_encode($v));
        }
    } elseif ($key === 'credits' && !is_string($v)) {
        throw new ConfigError("'credits' must be a string");
    }
}

function kb_check_color(string $key, mixed $v): void
{
    $ok = is_array($v) && array_is_list($v) && count($v) === 3;
    foreach ($ok ? $v : [] as $c) {
        $pair = is_array($c) ? $c : [$c, $c];
        $ok = $ok && array_is_list($pair) && count($pair) === 2 && is_int($pair[0]) && is_int($pair[1])
            && 0 <= $pair[0] && $pair[0] <= $pair[1] && $pair[1] <= 255;
    }
    if (!$ok) {
        throw new ConfigError("'$key' must be [r, g, b] or [[rlo, rhi], [glo, ghi], [blo, bhi]] with 0 <= lo <= hi <= 255, got " . json_encode($v));
    }
}

function kb_nearest(string $key, array $known): ?string
{
    $best = null;
    $bestDist = 4;
    foreach ($known as $k) {
        $d = levenshtein($key, $k);
        if ($d < $bestDist) {
            [$best, $bestDist] = [$k, $d];
        }
    }
    return $best;
}

/** Draw this image's concrete option values; consumes the random stream in a fixed order. */
function kb_sample_options(array $cfg): array
{
    $out = [];
    foreach ($cfg as $key => $value) {
        if (in_array($key, KB_FIXED_KEYS, true)) {
            $out[$key] = $value;
            continue;
        }
        $alts = kb_alternatives($key, $value);
        $v = count($alts) === 1 ? $alts[0] : $alts[mt_rand(0, count($alts) - 1)];
        if ($key === 'length') {
            // Drawn anew on every redraw, so a too-long answer gives way to a shorter one.
            $v = is_array($v) ? $v : [$v, $v];
        } elseif (in_array($key, KB_INT_KEYS, true)) {
            $v = is_array($v) ? mt_rand($v[0], $v[1]) : $v;
        } elseif ($key === 'wave_period') {
            // Four periods are drawn from this range when the wave is made.
            $v = is_array($v) ? [(float)$v[0], (float)$v[1]] : [(float)$v, (float)$v];
        } elseif (in_array($key, KB_FLOAT_KEYS, true)) {
            $v = is_array($v) ? kb_uniform((float)$v[0], (float)$v[1]) : (float)$v;
        } elseif (in_array($key, KB_COLOR_KEYS, true)) {
            $v = array_map(fn($c) => is_array($c) ? mt_rand($c[0], $c[1]) : $c, $v);
        }
        $out[$key] = $v;
    }
    return $out;
}

function kb_uniform(float $lo, float $hi): float
{
    return $lo + ($hi - $lo) * (mt_rand() / mt_getrandmax());
}
