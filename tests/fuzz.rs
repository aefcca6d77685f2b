//! Fuzzing on stable Rust (issue 18): real files of every supported format, mutated, and hostile
//! files made from scratch, fed to the decoders, the upload endpoint and the video path.
//!
//! Seeds: the committed fixtures (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF, camera RAW), a
//! few BMP/TIFF/GIF variants encoded from them at start, six real photos of the test data (all
//! under 300 KB) and, for the video path, two real videos. Mutations: bit flips, byte runs
//! overwritten, truncation, splices (across files and formats), a slice duplicated, the header's
//! size fields patched (zero, tiny, just under and just over the pixel limit, the field's
//! maximum: JPEG SOF, PNG IHDR with its CRC, GIF screen and frame, BMP, WebP VP8/VP8L/VP8X, TIFF
//! ImageWidth/ImageLength in every IFD, HEIF/AVIF `ispe`, MP4 `tkhd`/`avc1`) and EXIF garbage
//! (random bytes, huge entry counts, loops, a hostile IFD in JPEG APP1, PNG eXIf, WebP EXIF,
//! TIFF IFD0, HEIF's Exif item). "Bombs", tried first by every run: PNG (8-bit grey and 16-bit
//! RGBA, one row or interlaced), GIF (LZW) and TIFF (deflate) images of zeros declaring the
//! largest size under the pixel limit and one over it, a 64x48 GIF whose frame is 225 MP, a
//! 64x48 PNG or TIFF whose zTXt, iCCP, IDAT or strip inflates to 400 MB, and a WebP whose EXIF
//! chunk claims 3.75 GiB. The deflate and LZW streams are written here by hand (no compression
//! crate is a dependency).
//!
//! Targets: `decode_bytes` at min_side 0 and 224, `PhotoFacts::of_bytes`, a real server
//! (`POST /api/search`, multipart and raw body, and `POST /api/items` with the token) and
//! `FrameReader` (ffmpeg) on mutated copies of the videos.
//!
//! Every input is a pure function of (group, iteration, master seed); its recipe says which
//! seed file and mutation made it, and `LOOKALIKE_FUZZ_ONLY=group:iteration` (group `decode`,
//! `upload` or `video`) replays that one input and saves its bytes; `LOOKALIKE_FUZZ_FILE=PATH`
//! tries one file (a saved finding) on every target; `LOOKALIKE_FUZZ_GROUPS=decode,video` runs
//! only those groups.
//!
//! Measured per input: panics (caught, and counted by a panic hook on every thread: the test
//! fails on any), wall time, the peak of live Rust heap bytes (a counting global allocator)
//! and the process's peak RSS (VmHWM, reset through /proc/self/clear_refs before each input),
//! which also covers what the C decoders (libjpeg-turbo, libwebp, libheif) allocate. Every
//! target runs sequentially in the one test of this binary, so an input's figures are its own.
//! Each must stay under [`memory_bound`]; the small bombs under [`SMALL_IMAGE_BOUND`].
//!
//! Environment: `LOOKALIKE_FUZZ_INPUTS` (decoder inputs, default 2000), `LOOKALIKE_FUZZ_UPLOADS`
//! (default a tenth of that), `LOOKALIKE_FUZZ_VIDEOS` (default a hundredth), `LOOKALIKE_FUZZ_SEED`
//! (default 18), `LOOKALIKE_FUZZ_FINDINGS` (where failing inputs and each target's slowest input
//! are saved; default $TMPDIR/fuzz-findings). The long run is `scripts/fuzz.sh`; figures and
//! findings are in RELIABILITY.md.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{writable, Running};
use common::{fixture, model_dir, photo, testdata};
use fastrand::Rng;
use lookalike::engine::{Engine, EngineOptions};
use lookalike::image::{decode_bytes, sniff, Limits, PhotoFacts};
use lookalike::video::{FrameReader, VideoOptions};
use reqwest::blocking::{multipart, Client};
use serde_json::{json, Value};

// ---- live Rust heap bytes, their peak, and panics on any thread ----

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Relaxed).wrapping_add(bytes);
    PEAK.fetch_max(live, Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes in atomics
// (no allocation, no re-entrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size > layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Counts every panic, on any thread (a server worker, ffmpeg's reader threads), then prints
/// it as usual.
fn count_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Relaxed);
        default(info);
    }));
}

/// Runs `f`, turning a panic into its message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

// ---- per-input measurement ----

const MB: u64 = 1 << 20;

/// Bytes per allowed pixel that one input may make the process hold, from the worst path the
/// code has: a PNG one row high and `max_pixels` wide, 16-bit RGBA. The `png` crate may take
/// 8 bytes per pixel of width for its own rows (plus twice the file: `decoder_memory` in
/// src/image/png.rs), the row of samples handed out is 8 more, the RGB result 3: 19 (measured:
/// 2,366 MiB at 128 MP). Two-dimensional images stay under 11: an interlaced 16-bit RGBA PNG
/// holds its whole samples (8) and the RGB result (3), 1,343 MiB at 128 MP; the `image`
/// crate's decoders are held to 8 by `max_alloc`, then converted (3).
const BYTES_PER_PIXEL: u64 = 20;

/// The most one input may make the process hold: 20 bytes per pixel of the pixel limit
/// (128 MP: 2,441 MiB), twice the input (the PNG decoder's allowance for metadata), and 64 MiB
/// for everything that does not scale with pixels (decoder state, a request's copies of the
/// body, the network's activations).
fn memory_bound(input_len: usize) -> u64 {
    Limits::default().max_pixels * BYTES_PER_PIXEL + 2 * input_len as u64 + 64 * MB
}

/// The bombs that declare a 64x48 image (zTXt, iCCP, IDAT or strip inflating to 400 MB) must
/// stay under this: proof that the extra data is skipped or streamed, never held.
const SMALL_IMAGE_BOUND: u64 = 64 * MB;

/// What one input cost.
struct Measure {
    time: Duration,
    /// Peak of live Rust heap bytes over the input, above what was live before it.
    heap: u64,
    /// Peak RSS over the input, above the RSS before it.
    rss_growth: u64,
    /// Peak RSS over the input.
    rss_peak: u64,
    panics: usize,
}

struct Probe {
    start: Instant,
    heap_base: usize,
    rss_before: u64,
    panics: usize,
}

impl Probe {
    fn start() -> Probe {
        // "5" resets the process's peak RSS (VmHWM) to its current RSS (proc(5)).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let rss_before = status_kib("VmRSS:") * 1024;
        let heap_base = LIVE.load(Relaxed);
        PEAK.store(heap_base, Relaxed);
        Probe {
            start: Instant::now(),
            heap_base,
            rss_before,
            panics: PANICS.load(Relaxed),
        }
    }

    fn finish(self) -> Measure {
        let time = self.start.elapsed();
        let heap = PEAK.load(Relaxed).saturating_sub(self.heap_base) as u64;
        let rss_peak = status_kib("VmHWM:") * 1024;
        Measure {
            time,
            heap,
            rss_growth: rss_peak.saturating_sub(self.rss_before),
            rss_peak,
            panics: PANICS.load(Relaxed) - self.panics,
        }
    }
}

/// A field of /proc/self/status, in KiB (0 when unreadable).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The largest peak RSS of any child process waited for so far (ffmpeg), in bytes.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn children_peak_rss() -> u64 {
    // struct rusage on 64-bit Linux: two struct timeval (2 x i64 each), then 14 longs, the
    // first of which is ru_maxrss (KiB).
    #[repr(C)]
    struct RUsage([i64; 18]);
    extern "C" {
        fn getrusage(who: i32, usage: *mut RUsage) -> i32;
    }
    const RUSAGE_CHILDREN: i32 = -1;
    let mut usage = RUsage([0; 18]);
    // SAFETY: getrusage fills the struct, which has the C layout and size on this target.
    if unsafe { getrusage(RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.0[4]).unwrap_or(0) * 1024
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn children_peak_rss() -> u64 {
    0
}

// ---- configuration ----

struct Config {
    inputs: usize,
    uploads: usize,
    videos: usize,
    seed: u64,
    findings: PathBuf,
    /// Replay one input: (group, iteration).
    only: Option<(String, usize)>,
    /// Try one file (a saved finding) on every target instead.
    file: Option<PathBuf>,
    /// The groups to run (`decode`, `upload`, `video`; default all).
    groups: Vec<String>,
}

impl Config {
    fn from_env() -> Config {
        let number = |name: &str| -> Option<u64> {
            let text = std::env::var(name).ok()?;
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            Some(parsed.unwrap_or_else(|e| panic!("{name}={text}: {e}")))
        };
        let inputs = number("LOOKALIKE_FUZZ_INPUTS").map_or(2000, |n| n as usize);
        let only = std::env::var("LOOKALIKE_FUZZ_ONLY").ok().map(|spec| {
            let (group, iteration) = spec
                .split_once(':')
                .expect("LOOKALIKE_FUZZ_ONLY=group:iteration");
            (
                group.to_owned(),
                iteration.parse().expect("an iteration number"),
            )
        });
        Config {
            inputs,
            uploads: number("LOOKALIKE_FUZZ_UPLOADS").map_or(inputs / 10, |n| n as usize),
            videos: number("LOOKALIKE_FUZZ_VIDEOS").map_or(inputs / 100, |n| n as usize),
            seed: number("LOOKALIKE_FUZZ_SEED").unwrap_or(18),
            findings: std::env::var_os("LOOKALIKE_FUZZ_FINDINGS")
                .map_or_else(|| std::env::temp_dir().join("fuzz-findings"), PathBuf::from),
            only,
            file: std::env::var_os("LOOKALIKE_FUZZ_FILE").map(PathBuf::from),
            groups: std::env::var("LOOKALIKE_FUZZ_GROUPS")
                .unwrap_or_else(|_| "decode,upload,video".into())
                .split(',')
                .map(|g| g.trim().to_owned())
                .collect(),
        }
    }

    fn replaying(&self) -> bool {
        self.only.is_some() || self.file.is_some()
    }

    /// The iterations of `group` to run.
    fn iterations(&self, group: &str, count: usize) -> Vec<usize> {
        if !self.groups.iter().any(|g| g == group) {
            return Vec::new();
        }
        if self.file.is_some() {
            return vec![0];
        }
        match &self.only {
            Some((g, i)) if g == group => vec![*i],
            Some(_) => Vec::new(),
            None => (0..count).collect(),
        }
    }
}

// ---- inputs ----

#[derive(Clone)]
struct Input {
    /// `group-iteration`, for file names.
    id: String,
    bytes: Vec<u8>,
    /// How it was made: enough to make it again.
    recipe: String,
    /// The most memory it may cost.
    bound: u64,
    /// One of the hostile files made from scratch (reported one by one).
    bomb: bool,
}

impl Input {
    /// With the general bound for its size.
    fn bounded(self) -> Input {
        Input {
            bound: memory_bound(self.bytes.len()),
            ..self
        }
    }
}

struct Seed {
    name: String,
    /// The format lookalike sniffs ("none" for something else): seeds are drawn per class, so
    /// that a format with one seed file is tried as often as one with ten.
    class: String,
    bytes: Vec<u8>,
}

impl Seed {
    fn new(name: String, bytes: Vec<u8>) -> Seed {
        let class = sniff(&bytes).map_or_else(|| "none".to_owned(), |f| f.to_string());
        Seed { name, class, bytes }
    }
}

/// Real photos of the test data, each under 300 KB: baseline and progressive JPEG (one with
/// big-endian EXIF and GPS), RGBA, grey and RGB PNG.
const PHOTOS: &[&str] = &[
    "sklearn/china.jpg",
    "opencv/Blender_Suzanne1.jpg",
    "opencv/ela_original.jpg",
    "skimage/horse.png",
    "skimage/camera.png",
    "skimage/color.png",
];

/// The two real videos mutated for the video path: the smallest (7 KB, 4 s of 176x144 H.264)
/// and a 10 s 640x272 H.264 one with several scenes.
const VIDEOS: &[&str] = &["carphone_distorted.mp4", "bikes.mp4"];

const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "png", "webp", "gif", "bmp", "tif", "heic", "avif", "cr2", "cr3", "dng", "raf", "nef",
    "rw2",
];

fn image_seeds() -> Vec<Seed> {
    let mut names: Vec<String> = std::fs::read_dir(fixture(""))
        .expect("tests/fixtures")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            // The reference renditions are PNGs like the others: more of one format only.
            let extension = name.rsplit('.').next().unwrap_or("");
            IMAGE_EXTENSIONS.contains(&extension)
                && !name.starts_with("ref_")
                && !name.starts_with("golden_")
        })
        .collect();
    names.sort();
    let mut seeds: Vec<Seed> = names
        .into_iter()
        .map(|name| (std::fs::read(fixture(&name)).unwrap(), name))
        .filter(|(bytes, _)| !bytes.is_empty())
        .map(|(bytes, name)| Seed::new(name, bytes))
        .collect();
    for name in PHOTOS {
        let bytes = std::fs::read(photo(name)).unwrap();
        assert!(bytes.len() < 300_000, "{name} is too big a seed");
        seeds.push(Seed::new(format!("photos/{name}"), bytes));
    }
    seeds.extend(encoded_seeds());
    seeds
}

/// BMP, TIFF and GIF have one or two fixtures each: more of them, in other layouts (32-bit BMP
/// with alpha, grey BMP with a palette, RGBA and grey TIFF, quantised GIF), encoded by the
/// `image` crate from fixtures.
fn encoded_seeds() -> Vec<Seed> {
    use image::{DynamicImage, ImageFormat};
    let rgba = image::open(fixture("chelsea_alpha.png")).unwrap();
    let grey =
        DynamicImage::ImageLuma8(image::open(fixture("camera_grey.jpg")).unwrap().to_luma8());
    let mut seeds = Vec::new();
    for (name, picture, format) in [
        ("chelsea_alpha.bmp", &rgba, ImageFormat::Bmp),
        ("camera_grey.bmp", &grey, ImageFormat::Bmp),
        ("chelsea_alpha.tif", &rgba, ImageFormat::Tiff),
        ("camera_grey.tif", &grey, ImageFormat::Tiff),
        ("chelsea_alpha.gif", &rgba, ImageFormat::Gif),
        ("camera_grey.gif", &grey, ImageFormat::Gif),
    ] {
        let mut out = Cursor::new(Vec::new());
        // The GIF encoder takes RGB(A) only.
        let picture = match format {
            ImageFormat::Gif => &DynamicImage::ImageRgba8(picture.to_rgba8()),
            _ => picture,
        };
        picture.write_to(&mut out, format).unwrap();
        seeds.push(Seed::new(format!("encoded/{name}"), out.into_inner()));
    }
    seeds
}

fn video_seeds() -> Vec<Seed> {
    VIDEOS
        .iter()
        .map(|name| {
            let bytes = std::fs::read(testdata().join("videos").join(name)).unwrap();
            Seed {
                name: format!("videos/{name}"),
                class: "video".into(),
                bytes,
            }
        })
        .collect()
}

/// SplitMix64 of the master seed, the group and the iteration: the input's own RNG seed.
fn input_seed(master: u64, group: &str, iteration: usize) -> u64 {
    let group = group.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut z = master ^ group ^ (iteration as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Input `iteration` of `group`: the bombs first, then mutations of seeds.
fn make_input(
    cfg: &Config,
    group: &str,
    iteration: usize,
    seeds: &[Seed],
    bombs: &[Input],
    video: bool,
) -> Input {
    let id = format!("{group}-{iteration}");
    if let Some(file) = &cfg.file {
        return Input {
            id,
            bytes: std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
            recipe: format!("{group}: the file {}", file.display()),
            bound: 0,
            bomb: false,
        }
        .bounded();
    }
    if let Some(bomb) = bombs.get(iteration) {
        return Input {
            id,
            recipe: format!("{group}#{iteration} bomb {}", bomb.recipe),
            ..bomb.clone()
        };
    }
    let rng_seed = input_seed(cfg.seed, group, iteration);
    let mut rng = Rng::with_seed(rng_seed);
    let seed = pick_seed(&mut rng, seeds);
    let (bytes, how) = mutate(&mut rng, seed, seeds, video);
    Input {
        id,
        bytes,
        recipe: format!(
            "{group}#{iteration} rng={rng_seed:#018x} seed={}: {how}",
            seed.name
        ),
        bound: 0,
        bomb: false,
    }
    .bounded()
}

/// A class uniformly, then a seed of it.
fn pick_seed<'a>(rng: &mut Rng, seeds: &'a [Seed]) -> &'a Seed {
    let mut classes: Vec<&str> = seeds.iter().map(|s| s.class.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    let class = classes[rng.usize(..classes.len())];
    let of_class: Vec<&Seed> = seeds.iter().filter(|s| s.class == class).collect();
    of_class[rng.usize(..of_class.len())]
}

// ---- mutations ----

fn mutate(rng: &mut Rng, seed: &Seed, all: &[Seed], video: bool) -> (Vec<u8>, String) {
    let mut b = seed.bytes.clone();
    let mut how = match rng.u32(0..100) {
        0..=21 => bit_flips(rng, &mut b, if video { 64 } else { 16 }),
        22..=35 => overwrite_runs(rng, &mut b),
        36..=47 => truncate(rng, &mut b),
        48..=59 => splice(rng, &mut b, all),
        60..=65 => duplicate_slice(rng, &mut b),
        66..=84 => huge_dimensions(rng, &mut b),
        _ if video => overwrite_runs(rng, &mut b),
        _ => exif_garbage(rng, &mut b),
    };
    if rng.u32(0..5) == 0 && !b.is_empty() {
        how += " + ";
        how += &bit_flips(rng, &mut b, 4);
    }
    if b.starts_with(PNG_MAGIC) && rng.bool() {
        fix_png_crcs(&mut b);
        how += " + PNG CRCs fixed";
    }
    (b, how)
}

fn bit_flips(rng: &mut Rng, b: &mut [u8], most: usize) -> String {
    if b.is_empty() {
        return "bitflips(none: empty)".into();
    }
    let n = rng.usize(1..=most);
    let mut at = Vec::new();
    for _ in 0..n {
        let (pos, bit) = (rng.usize(..b.len()), rng.u8(0..8));
        b[pos] ^= 1 << bit;
        at.push(format!("{pos}.{bit}"));
    }
    format!("bitflips({n} at {})", at.join(" "))
}

fn overwrite_runs(rng: &mut Rng, b: &mut [u8]) -> String {
    if b.is_empty() {
        return "overwrite(none: empty)".into();
    }
    let mut runs = Vec::new();
    for _ in 0..rng.usize(1..=3) {
        let len = rng.usize(1..=b.len().min(64));
        let at = rng.usize(..=b.len() - len);
        let run = &mut b[at..at + len];
        let fill = match rng.u8(0..3) {
            0 => {
                run.fill(0);
                "00"
            }
            1 => {
                run.fill(0xff);
                "ff"
            }
            _ => {
                rng.fill(run);
                "random"
            }
        };
        runs.push(format!("{at}+{len}={fill}"));
    }
    format!("overwrite({})", runs.join(" "))
}

fn truncate(rng: &mut Rng, b: &mut Vec<u8>) -> String {
    // Half the cuts fall in the first 512 bytes, where the headers are.
    let end = if rng.bool() {
        b.len().min(512)
    } else {
        b.len()
    };
    let at = rng.usize(..end.max(1));
    let len = b.len();
    b.truncate(at);
    format!("truncate({at} of {len})")
}

fn splice(rng: &mut Rng, b: &mut Vec<u8>, all: &[Seed]) -> String {
    let other = &all[rng.usize(..all.len())];
    let cut = rng.usize(..=b.len());
    let from = rng.usize(..other.bytes.len().max(1));
    b.truncate(cut);
    b.extend_from_slice(other.bytes.get(from..).unwrap_or_default());
    format!("splice(..{cut} + {}[{from}..])", other.name)
}

fn duplicate_slice(rng: &mut Rng, b: &mut Vec<u8>) -> String {
    if b.is_empty() {
        return "duplicate(none: empty)".into();
    }
    let len = rng.usize(1..=b.len().min(4096));
    let from = rng.usize(..=b.len() - len);
    let to = rng.usize(..=b.len());
    let slice = b[from..from + len].to_vec();
    b.splice(to..to, slice);
    format!("duplicate({from}+{len} at {to})")
}

// -- byte fields --

fn get(b: &[u8], at: usize, n: usize, big: bool) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    let fold = |v: u64, x: &u8| (v << 8) | u64::from(*x);
    Some(if big {
        s.iter().fold(0, fold)
    } else {
        s.iter().rev().fold(0, fold)
    })
}

fn put(b: &mut [u8], at: usize, n: usize, big: bool, value: u64) -> bool {
    let Some(s) = at.checked_add(n).and_then(|end| b.get_mut(at..end)) else {
        return false;
    };
    for i in 0..n {
        let byte = (value >> (8 * i)) as u8;
        if big {
            s[n - 1 - i] = byte;
        } else {
            s[i] = byte;
        }
    }
    true
}

/// Where `needle` occurs in `hay` (the first 64 places).
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .take(64)
        .collect()
}

// -- huge declared dimensions --

/// One size field.
#[derive(Clone, Copy)]
enum Field {
    /// An unsigned integer of `n` bytes, holding the size minus one when `minus_one`, shifted
    /// left by `shift` bits (16.16 fixed point).
    Int {
        at: usize,
        n: usize,
        big: bool,
        minus_one: bool,
        shift: u32,
    },
    /// VP8L's 14-bit width-1 and height-1, packed in the 32 bits after its signature.
    Vp8l { at: usize, height: bool },
    /// A TIFF directory entry (tag, type, count, value): rewritten as one LONG.
    TiffEntry { at: usize, big: bool },
}

impl Field {
    fn int(at: usize, n: usize, big: bool) -> Field {
        Field::Int {
            at,
            n,
            big,
            minus_one: false,
            shift: 0,
        }
    }

    fn read(self, b: &[u8]) -> Option<u64> {
        match self {
            Field::Int {
                at,
                n,
                big,
                minus_one,
                shift,
            } => get(b, at, n, big).map(|v| (v >> shift) + u64::from(minus_one)),
            Field::Vp8l { at, height } => {
                get(b, at, 4, false).map(|v| ((v >> if height { 14 } else { 0 }) & 0x3fff) + 1)
            }
            Field::TiffEntry { at, big } => match get(b, at + 2, 2, big)? {
                3 => get(b, at + 8, 2, big),
                _ => get(b, at + 8, 4, big),
            },
        }
    }

    fn write(self, b: &mut [u8], value: u64) {
        match self {
            Field::Int {
                at,
                n,
                big,
                minus_one,
                shift,
            } => {
                let v = value.saturating_sub(u64::from(minus_one)) << shift;
                put(b, at, n, big, v);
            }
            Field::Vp8l { at, height } => {
                if let Some(word) = get(b, at, 4, false) {
                    let offset = if height { 14 } else { 0 };
                    let v = value.saturating_sub(1) & 0x3fff;
                    put(
                        b,
                        at,
                        4,
                        false,
                        (word & !(0x3fff << offset)) | (v << offset),
                    );
                }
            }
            Field::TiffEntry { at, big } => {
                put(b, at + 2, 2, big, 4);
                put(b, at + 4, 4, big, 1);
                put(b, at + 8, 4, big, value);
            }
        }
    }
}

/// A place where a file says how big its image is.
struct Site {
    what: &'static str,
    width: Field,
    height: Field,
    /// The largest value the fields can hold.
    max: u64,
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

fn is_tiff_like(b: &[u8]) -> bool {
    b.starts_with(b"II") || b.starts_with(b"MM")
}

fn dimension_sites(b: &[u8]) -> Vec<Site> {
    let mut sites = Vec::new();
    if b.starts_with(PNG_MAGIC) && b.get(12..16) == Some(b"IHDR") {
        sites.push(Site {
            what: "PNG IHDR",
            width: Field::int(16, 4, true),
            height: Field::int(20, 4, true),
            max: 0x7fff_ffff,
        });
    }
    if b.starts_with(b"GIF8") {
        sites.push(Site {
            what: "GIF screen",
            width: Field::int(6, 2, false),
            height: Field::int(8, 2, false),
            max: 0xffff,
        });
        for at in gif_frames(b) {
            sites.push(Site {
                what: "GIF frame",
                width: Field::int(at + 5, 2, false),
                height: Field::int(at + 7, 2, false),
                max: 0xffff,
            });
        }
    }
    if b.starts_with(b"BM") {
        let core = get(b, 14, 4, false) == Some(12);
        sites.push(Site {
            what: "BMP header",
            width: Field::int(18, if core { 2 } else { 4 }, false),
            height: Field::int(if core { 20 } else { 22 }, if core { 2 } else { 4 }, false),
            max: if core { 0xffff } else { 0x7fff_ffff },
        });
    }
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        for (fourcc, data, _) in riff_chunks(b) {
            match &fourcc {
                b"VP8 " if b.get(data + 3..data + 6) == Some(&[0x9d, 0x01, 0x2a]) => {
                    sites.push(Site {
                        what: "WebP VP8",
                        width: Field::int(data + 6, 2, false),
                        height: Field::int(data + 8, 2, false),
                        max: 0x3fff,
                    })
                }
                b"VP8L" if b.get(data) == Some(&0x2f) => sites.push(Site {
                    what: "WebP VP8L",
                    width: Field::Vp8l {
                        at: data + 1,
                        height: false,
                    },
                    height: Field::Vp8l {
                        at: data + 1,
                        height: true,
                    },
                    max: 0x4000,
                }),
                b"VP8X" => {
                    let field = |at| Field::Int {
                        at,
                        n: 3,
                        big: false,
                        minus_one: true,
                        shift: 0,
                    };
                    sites.push(Site {
                        what: "WebP VP8X canvas",
                        width: field(data + 4),
                        height: field(data + 7),
                        max: 1 << 24,
                    });
                }
                _ => {}
            }
        }
    }
    if is_tiff_like(b) {
        let big = b.starts_with(b"MM");
        for ifd in tiff_ifds(b, 0) {
            let entry =
                |tag: u64| tiff_entries(b, ifd, big).find(|&at| get(b, at, 2, big) == Some(tag));
            if let (Some(w), Some(h)) = (entry(256), entry(257)) {
                sites.push(Site {
                    what: "TIFF ImageWidth/ImageLength",
                    width: Field::TiffEntry { at: w, big },
                    height: Field::TiffEntry { at: h, big },
                    max: 0xffff_ffff,
                });
            }
        }
    }
    // JPEG frame headers, also those of the previews inside RAW files.
    for at in jpeg_frame_headers(b) {
        sites.push(Site {
            what: "JPEG SOF",
            width: Field::int(at + 7, 2, true),
            height: Field::int(at + 5, 2, true),
            max: 0xffff,
        });
    }
    for at in find_all(b, b"ispe") {
        sites.push(Site {
            what: "HEIF ispe",
            width: Field::int(at + 8, 4, true),
            height: Field::int(at + 12, 4, true),
            max: 0xffff_ffff,
        });
    }
    for at in find_all(b, b"tkhd") {
        let base = if b.get(at + 4) == Some(&1) {
            at + 92
        } else {
            at + 80
        };
        let field = |at| Field::Int {
            at,
            n: 4,
            big: true,
            minus_one: false,
            shift: 16,
        };
        sites.push(Site {
            what: "MP4 tkhd",
            width: field(base),
            height: field(base + 4),
            max: 0xffff,
        });
    }
    for fourcc in [b"avc1", b"hvc1", b"mp4v"] {
        for at in find_all(b, fourcc) {
            sites.push(Site {
                what: "MP4 sample entry",
                width: Field::int(at + 28, 2, true),
                height: Field::int(at + 30, 2, true),
                max: 0xffff,
            });
        }
    }
    sites.retain(|s| s.width.read(b).is_some() && s.height.read(b).is_some());
    sites
}

/// Offsets of the GIF image descriptors (the first four).
fn gif_frames(b: &[u8]) -> Vec<usize> {
    let mut frames = Vec::new();
    let Some(&flags) = b.get(10) else {
        return frames;
    };
    let mut at = 13;
    if flags & 0x80 != 0 {
        at += 3 << ((flags & 7) + 1);
    }
    let skip_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let len = usize::from(*b.get(at)?);
            at += 1 + len;
            if len == 0 {
                return Some(at);
            }
        }
    };
    while frames.len() < 4 {
        match b.get(at) {
            Some(0x21) => match skip_blocks(at + 2) {
                Some(next) => at = next,
                None => break,
            },
            Some(0x2c) => {
                frames.push(at);
                let Some(&local) = b.get(at + 9) else { break };
                let mut data = at + 10;
                if local & 0x80 != 0 {
                    data += 3 << ((local & 7) + 1);
                }
                match skip_blocks(data + 1) {
                    Some(next) => at = next,
                    None => break,
                }
            }
            _ => break,
        }
    }
    frames
}

/// The chunks of a RIFF file: (fourcc, data offset, data length).
fn riff_chunks(b: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut chunks = Vec::new();
    let mut at = 12;
    while let (Some(fourcc), Some(len)) = (b.get(at..at + 4), get(b, at + 4, 4, false)) {
        let len = len as usize;
        chunks.push(([fourcc[0], fourcc[1], fourcc[2], fourcc[3]], at + 8, len));
        at = at + 8 + len + (len & 1);
        if chunks.len() > 64 {
            break;
        }
    }
    chunks
}

/// The directories of a TIFF structure starting at `base`: IFD0, the chain after it, and the
/// SubIFDs and EXIF directories they point at (at most 16; loops are cut).
fn tiff_ifds(b: &[u8], base: usize) -> Vec<usize> {
    let big = b.get(base..base + 2) == Some(b"MM");
    let mut found = Vec::new();
    let mut pending: Vec<u64> = get(b, base + 4, 4, big).into_iter().collect();
    while let Some(offset) = pending.pop() {
        let Some(at) = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(base))
        else {
            continue;
        };
        if found.len() >= 16 || found.contains(&at) || offset == 0 {
            continue;
        }
        let Some(count) = get(b, at, 2, big) else {
            continue;
        };
        if count == 0 || count > 1000 {
            continue;
        }
        found.push(at);
        for entry in tiff_entries(b, at, big) {
            let tag = get(b, entry, 2, big);
            if matches!(tag, Some(330 | 0x8769)) {
                let count = get(b, entry + 4, 4, big).unwrap_or(0);
                if count == 1 {
                    pending.extend(get(b, entry + 8, 4, big));
                } else if let Some(list) = get(b, entry + 8, 4, big) {
                    for i in 0..count.min(4) as usize {
                        pending.extend(get(b, base + list as usize + 4 * i, 4, big));
                    }
                }
            }
        }
        pending.extend(get(b, at + 2 + 12 * count as usize, 4, big));
    }
    found
}

/// The offsets of the entries of the directory at `ifd`.
fn tiff_entries(b: &[u8], ifd: usize, big: bool) -> impl Iterator<Item = usize> + '_ {
    let count = get(b, ifd, 2, big).unwrap_or(0) as usize;
    (0..count)
        .map(move |i| ifd + 2 + 12 * i)
        .take_while(move |&at| at + 12 <= b.len())
}

/// Offsets of JPEG frame headers (SOF0-15 but DHT, JPG and DAC) that look real: a length of
/// 8 + 3 per component, 1 to 4 components, 8, 12 or 16 bits (the first eight).
fn jpeg_frame_headers(b: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    for at in 0..b.len().saturating_sub(10) {
        if b[at] != 0xff || !(0xc0..=0xcf).contains(&b[at + 1]) {
            continue;
        }
        if matches!(b[at + 1], 0xc4 | 0xc8 | 0xcc) {
            continue;
        }
        let len = get(b, at + 2, 2, true).unwrap_or(0);
        let components = u64::from(b[at + 9]);
        if (1..=4).contains(&components)
            && len == 8 + 3 * components
            && matches!(b[at + 4], 8 | 12 | 16)
        {
            found.push(at);
            if found.len() == 8 {
                break;
            }
        }
    }
    found
}

/// The side of the largest square under the pixel limit (11313 for 128 MP).
fn limit_side() -> u64 {
    Limits::default().max_pixels.isqrt()
}

fn huge_dimensions(rng: &mut Rng, b: &mut [u8]) -> String {
    let sites = dimension_sites(b);
    if sites.is_empty() {
        return format!("{} (no size field to patch)", bit_flips(rng, b, 16));
    }
    let (w0, h0) = (
        sites[0].width.read(b).unwrap_or(1),
        sites[0].height.read(b).unwrap_or(1),
    );
    let side = limit_side();
    let max = sites.iter().map(|s| s.max).min().unwrap_or(0xffff);
    let pixels = Limits::default().max_pixels;
    let (w, h, why) = match rng.u8(0..10) {
        0 => (max, max, "the fields' maximum"),
        1 => (side + 1, side + 1, "just over the pixel limit"),
        2 => (side, side, "just under the pixel limit"),
        3 => (max, 1, "widest"),
        4 => (1, max, "tallest"),
        5 => (pixels.min(max), 1, "one row at the pixel limit"),
        6 if rng.bool() => (0, h0, "zero width"),
        6 => (w0, 0, "zero height"),
        7 => (rng.u64(1..=max), rng.u64(1..=max), "random"),
        8 => (w0 * 2 + 1, h0 * 2 + 1, "a little more than the data"),
        _ => (w0.div_ceil(2), h0, "less than the data"),
    };
    let (w, h) = (w.min(max), h.min(max));
    // All the places at once, or one of them.
    let all = rng.bool();
    let one = rng.usize(..sites.len());
    let mut patched = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        if all || i == one {
            site.width.write(b, w);
            site.height.write(b, h);
            patched.push(site.what);
        }
    }
    if b.starts_with(PNG_MAGIC) {
        fix_png_crcs(b);
    }
    format!("dimensions {w}x{h} ({why}) in {}", patched.join(", "))
}

// -- EXIF garbage --

/// Where a file keeps EXIF: (the start of its TIFF header, the end of the region it may use).
fn exif_region(b: &[u8]) -> Option<(usize, usize)> {
    if b.starts_with(&[0xff, 0xd8]) {
        let mut at = 2;
        while b.get(at) == Some(&0xff) {
            let marker = *b.get(at + 1)?;
            if marker == 0xda {
                break;
            }
            let len = get(b, at + 2, 2, true)? as usize;
            if marker == 0xe1 && b.get(at + 4..at + 10) == Some(b"Exif\0\0") {
                return Some((at + 10, (at + 2 + len).min(b.len())));
            }
            at += 2 + len;
        }
        return None;
    }
    if b.starts_with(PNG_MAGIC) {
        return png_chunks(b)
            .into_iter()
            .find(|(kind, _, _)| kind == b"eXIf")
            .map(|(_, data, len)| (data, (data + len).min(b.len())));
    }
    if b.starts_with(b"RIFF") {
        return riff_chunks(b)
            .into_iter()
            .find(|(fourcc, _, _)| fourcc == b"EXIF")
            .map(|(_, data, len)| {
                let skip = if b.get(data..data + 6) == Some(b"Exif\0\0") {
                    6
                } else {
                    0
                };
                (data + skip, (data + len).min(b.len()))
            });
    }
    if is_tiff_like(b) {
        return Some((0, b.len()));
    }
    // HEIF's Exif item and anything else that embeds one.
    find_all(b, b"Exif\0\0")
        .first()
        .map(|&at| (at + 6, (at + 6 + 65536).min(b.len())))
}

fn exif_garbage(rng: &mut Rng, b: &mut Vec<u8>) -> String {
    let how = match exif_region(b) {
        Some((start, end)) if end > start + 8 => garble_exif(rng, b, start, end),
        _ => insert_exif(rng, b),
    };
    if b.starts_with(PNG_MAGIC) && rng.u8(0..4) != 0 {
        fix_png_crcs(b);
    }
    how
}

fn garble_exif(rng: &mut Rng, b: &mut [u8], start: usize, end: usize) -> String {
    let big = b.get(start..start + 2) == Some(b"MM");
    let ifd0 = get(b, start + 4, 4, big)
        .and_then(|o| usize::try_from(o).ok())
        .map(|o| start + o)
        .filter(|&at| at + 2 <= end);
    let entries: Vec<usize> = ifd0
        .map(|at| {
            tiff_entries(b, at, big)
                .filter(|&e| e + 12 <= end)
                .collect()
        })
        .unwrap_or_default();
    match (rng.u8(0..6), ifd0) {
        (1, Some(ifd)) => {
            let count = [0, 1, 0xffff, u64::from(rng.u16(..))][rng.usize(..4)];
            put(b, ifd, 2, big, count);
            format!("EXIF IFD0 entry count {count}")
        }
        (2, Some(_)) if !entries.is_empty() => {
            let entry = entries[rng.usize(..entries.len())];
            let count = [
                0xffff_ffff,
                0x4000_0000,
                0x0010_0000,
                u64::from(rng.u32(..)),
            ][rng.usize(..4)];
            put(b, entry + 4, 4, big, count);
            let mut how = format!("EXIF entry at {entry} count {count}");
            if rng.bool() {
                let kind = rng.u64(0..16);
                put(b, entry + 2, 2, big, kind);
                how += &format!(" type {kind}");
            }
            how
        }
        (3, Some(ifd)) if !entries.is_empty() => {
            let entry = entries[rng.usize(..entries.len())];
            let target = match rng.u8(0..3) {
                0 => (ifd - start) as u64,
                1 => 0xffff_fff0,
                _ => u64::from(rng.u32(..)),
            };
            put(b, entry + 8, 4, big, target);
            format!("EXIF entry at {entry} value/offset {target:#x}")
        }
        (4, Some(ifd)) => {
            let next = ifd + 2 + 12 * entries.len();
            let target = if rng.bool() {
                (ifd - start) as u64
            } else {
                u64::from(rng.u32(..))
            };
            put(b, next, 4, big, target);
            format!(
                "EXIF next-IFD pointer {target:#x} (IFD0 at {:#x})",
                ifd - start
            )
        }
        (5, _) => {
            let hostile = hostile_exif(rng);
            let len = hostile.len().min(end - start);
            b[start..start + len].copy_from_slice(&hostile[..len]);
            format!("EXIF replaced by a hostile IFD ({len} bytes)")
        }
        _ => {
            let n = rng.usize(1..=16);
            for _ in 0..n {
                let at = rng.usize(start..end);
                b[at] = rng.u8(..);
            }
            format!("EXIF {n} random bytes in {start}..{end}")
        }
    }
}

/// A TIFF structure meant to hurt: entries with huge counts, bad types, offsets past the end
/// or back at the directory itself, a next-IFD pointer that loops.
fn hostile_exif(rng: &mut Rng) -> Vec<u8> {
    let big = rng.bool();
    let mut t = if big {
        b"MM\0*".to_vec()
    } else {
        b"II*\0".to_vec()
    };
    let push = |t: &mut Vec<u8>, n: usize, v: u64| {
        let at = t.len();
        t.resize(at + n, 0);
        put(t, at, n, big, v);
    };
    push(&mut t, 4, 8);
    let declared = [1, 3, 12, 0xffff][rng.usize(..4)];
    push(&mut t, 2, declared);
    for _ in 0..declared.min(24) {
        let tags = [
            0x010f, 0x0110, 0x0132, 0x0112, 0x8769, 0x8825, 0x9003, 0x9004, 0x0002, 0x0004,
        ];
        let tag = if rng.u8(0..4) == 0 {
            u64::from(rng.u16(..))
        } else {
            tags[rng.usize(..tags.len())]
        };
        push(&mut t, 2, tag);
        push(&mut t, 2, rng.u64(0..=13));
        push(
            &mut t,
            4,
            [1, 2, 20, 0xffff, 0x4000_0000, 0xffff_ffff][rng.usize(..6)],
        );
        push(
            &mut t,
            4,
            [8, 0, 0xffff_ffff, u64::from(rng.u32(..))][rng.usize(..4)],
        );
    }
    push(&mut t, 4, [0, 8, u64::from(rng.u32(..))][rng.usize(..3)]);
    let tail = rng.usize(0..64);
    let at = t.len();
    t.resize(at + tail, 0);
    rng.fill(&mut t[at..]);
    t
}

/// Puts a hostile EXIF block where the format keeps one (JPEG APP1 after SOI, PNG eXIf before
/// the image data, a WebP EXIF chunk), or "Exif\0\0" and the block at a random place.
fn insert_exif(rng: &mut Rng, b: &mut Vec<u8>) -> String {
    let hostile = hostile_exif(rng);
    if b.starts_with(&[0xff, 0xd8]) {
        let mut segment = vec![0xff, 0xe1];
        segment.extend_from_slice(&((hostile.len() + 8) as u16).to_be_bytes());
        segment.extend_from_slice(b"Exif\0\0");
        segment.extend_from_slice(&hostile);
        b.splice(2..2, segment);
        return format!("hostile EXIF APP1 ({} bytes) after SOI", hostile.len());
    }
    if b.starts_with(PNG_MAGIC) {
        let at = png_chunks(b)
            .into_iter()
            .find(|(kind, _, _)| kind == b"IDAT")
            .map_or(33.min(b.len()), |(_, data, _)| data - 8);
        b.splice(at..at, png_chunk(b"eXIf", &hostile));
        return format!("hostile eXIf chunk ({} bytes) at {at}", hostile.len());
    }
    if b.starts_with(b"RIFF") {
        b.extend_from_slice(b"EXIF");
        b.extend_from_slice(&(hostile.len() as u32).to_le_bytes());
        b.extend_from_slice(&hostile);
        if hostile.len() % 2 == 1 {
            b.push(0);
        }
        let riff = (b.len() - 8) as u64;
        put(b, 4, 4, false, riff);
        return format!("hostile EXIF chunk ({} bytes) appended", hostile.len());
    }
    let at = rng.usize(..=b.len());
    let mut block = b"Exif\0\0".to_vec();
    block.extend_from_slice(&hostile);
    b.splice(at..at, block);
    format!("hostile Exif block ({} bytes) at {at}", hostile.len())
}

// ---- PNG, deflate, LZW and TIFF written by hand ----

fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (n, entry) in table.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        table
    });
    !data.iter().fold(!0u32, |c, &byte| {
        table[((c ^ u32::from(byte)) & 0xff) as usize] ^ (c >> 8)
    })
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = Vec::with_capacity(data.len() + 12);
    chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(&crc32(&chunk[4..]).to_be_bytes());
    chunk
}

/// The chunks of a PNG file: (type, data offset, data length).
fn png_chunks(b: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut chunks = Vec::new();
    let mut at = 8;
    while let (Some(len), Some(kind)) = (get(b, at, 4, true), b.get(at + 4..at + 8)) {
        let len = len as usize;
        chunks.push(([kind[0], kind[1], kind[2], kind[3]], at + 8, len));
        at = match at.checked_add(12 + len) {
            Some(next) => next,
            None => break,
        };
    }
    chunks
}

/// Recomputes the CRC of every whole chunk, so that a mutation reaches the decoder past the
/// checksum test.
fn fix_png_crcs(b: &mut [u8]) {
    for (_, data, len) in png_chunks(b) {
        if data + len + 4 <= b.len() {
            let crc = crc32(&b[data - 4..data + len]);
            put(b, data + len, 4, true, u64::from(crc));
        }
    }
}

fn png_header(width: u32, height: u32, depth: u8, color: u8, interlaced: bool) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color, 0, 0, u8::from(interlaced)]);
    let mut png = PNG_MAGIC.to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png
}

/// Bits out, least significant first (deflate's and GIF's order).
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code, which deflate packs most significant bit first.
    fn code(&mut self, code: u64, len: u32) {
        let reversed = (0..len).fold(0, |r, i| (r << 1) | ((code >> i) & 1));
        self.put(reversed, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A zlib stream of `n` zero bytes: one fixed-Huffman block, a literal 0 and then matches of
/// 258 bytes at distance 1 (13 bits each: a ratio of ~160:1, 2.5 MB for 400 MB).
fn zlib_zeros(n: u64) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.put(0x78, 8);
    bits.put(0x01, 8);
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // fixed Huffman codes
    let literal_zero = |bits: &mut Bits| bits.code(0x30, 8);
    if n > 0 {
        literal_zero(&mut bits);
        let mut left = n - 1;
        while left >= 258 {
            bits.code(0xc5, 8); // length code 285: 258 bytes
            bits.code(0, 5); // distance code 0: 1 byte back
            left -= 258;
        }
        for _ in 0..left {
            literal_zero(&mut bits);
        }
    }
    bits.code(0, 7); // end of block
    let mut out = bits.finish();
    // Adler-32 of n zeros: a stays 1, b adds 1 per byte.
    let adler = ((n % 65521) << 16) | 1;
    out.extend_from_slice(&(adler as u32).to_be_bytes());
    out
}

/// An 8-bit grey PNG of zeros declaring `width` x `height`, its image data one zlib stream of
/// `data` bytes (h x (w + 1) is the exact size; more is data past the last row).
fn png_zeros(width: u32, height: u32, data: u64) -> Vec<u8> {
    let mut png = png_header(width, height, 8, 0, false);
    png.extend(png_chunk(b"IDAT", &zlib_zeros(data)));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// A 16-bit RGBA PNG of zeros (transparent black), plain or Adam7-interlaced: the most bytes
/// per pixel a PNG can decode to (8).
fn png16_rgba_zeros(width: u32, height: u32, interlaced: bool) -> Vec<u8> {
    let (w, h) = (u64::from(width), u64::from(height));
    // Each pass: rows x (a filter byte + 8 bytes per pixel); one pass when not interlaced.
    let passes: &[(u64, u64, u64, u64)] = if interlaced {
        &[
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ]
    } else {
        &[(0, 0, 1, 1)]
    };
    let data: u64 = passes
        .iter()
        .map(|&(x0, y0, dx, dy)| {
            let (pw, ph) = (
                w.saturating_sub(x0).div_ceil(dx),
                h.saturating_sub(y0).div_ceil(dy),
            );
            if pw == 0 {
                0
            } else {
                ph * (1 + 8 * pw)
            }
        })
        .sum();
    let mut png = png_header(width, height, 16, 6, interlaced);
    png.extend(png_chunk(b"IDAT", &zlib_zeros(data)));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// `png` with a chunk inserted right after IHDR.
fn with_chunk_after_ihdr(png: &[u8], chunk: Vec<u8>) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend(chunk);
    out.extend_from_slice(&png[33..]);
    out
}

/// GIF LZW data (with its minimum code size byte and sub-blocks) for `pixels` zeros: the
/// longest zero run in the table each time, so the table fills with runs of 1..4091 zeros and
/// 128 MP take ~47 KB. Code widths follow the decoder's rule: one more bit as soon as its next
/// free code reaches 2^width.
fn gif_lzw_zeros(pixels: u64) -> Vec<u8> {
    const MIN: u32 = 2;
    let clear = 1u64 << MIN;
    let first = clear + 2;
    let mut width = MIN + 1;
    let mut next = first; // the decoder's next free code
    let mut bits = Bits::default();
    bits.put(clear, width);
    let mut left = pixels;
    let mut emitted = 0u64;
    while left > 0 {
        // After j codes the encoder's table holds runs of 2..=j+1 zeros (up to 4096 codes).
        let longest = (emitted + 1).min(1 + (4096 - first));
        let run = longest.min(left);
        let code = if run == 1 { 0 } else { first + run - 2 };
        bits.put(code, width);
        if emitted > 0 && next < 4096 {
            next += 1;
            if next == 1 << width && width < 12 {
                width += 1;
            }
        }
        emitted += 1;
        left -= run;
    }
    bits.put(clear + 1, width); // end of information
    let data = bits.finish();
    let mut out = vec![MIN as u8];
    for block in data.chunks(255) {
        out.push(block.len() as u8);
        out.extend_from_slice(block);
    }
    out.push(0);
    out
}

/// A GIF with a `screen` logical screen and one `frame` of zeros (black), whose LZW data
/// holds `pixels` zeros.
fn gif_zeros(screen: (u16, u16), frame: (u16, u16), pixels: u64) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&screen.0.to_le_bytes());
    gif.extend_from_slice(&screen.1.to_le_bytes());
    gif.extend_from_slice(&[0x91, 0, 0]); // a global colour table of 4 entries
    gif.extend_from_slice(&[0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 255, 0]);
    gif.push(0x2c);
    gif.extend_from_slice(&[0, 0, 0, 0]);
    gif.extend_from_slice(&frame.0.to_le_bytes());
    gif.extend_from_slice(&frame.1.to_le_bytes());
    gif.push(0);
    gif.extend(gif_lzw_zeros(pixels));
    gif.push(0x3b);
    gif
}

/// A little-endian 8-bit grey TIFF declaring `width` x `height`, one Adobe-deflate strip of
/// `data` zero bytes.
fn tiff_deflate_zeros(width: u32, height: u32, data: u64) -> Vec<u8> {
    let strip = zlib_zeros(data);
    let entries: [(u16, u16, u32); 9] = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 8), // Adobe deflate
        (262, 3, 1), // black is zero
        (273, 4, 0), // strip offset: after the directory
        (277, 3, 1),
        (278, 4, height),
        (279, 4, strip.len() as u32),
    ];
    let data_at = 8 + 2 + 12 * entries.len() as u32 + 4;
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        let value = if tag == 273 { data_at } else { value };
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&kind.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&value.to_le_bytes());
    }
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend(strip);
    tiff
}

/// china_exif.webp (64x48) with its EXIF chunk's size field saying `size`.
fn webp_exif_claiming(size: u32) -> Vec<u8> {
    let mut webp = std::fs::read(fixture("china_exif.webp")).unwrap();
    let (_, data, _) = riff_chunks(&webp)
        .into_iter()
        .find(|(fourcc, _, _)| fourcc == b"EXIF")
        .expect("china_exif.webp has an EXIF chunk");
    put(&mut webp, data - 4, 4, false, u64::from(size));
    webp
}

/// The hostile files made from scratch, tried first by every run.
fn bombs() -> Vec<Input> {
    let side = limit_side() as u32;
    let over = side + 1;
    let pixels = Limits::default().max_pixels;
    let inflated = 400 * MB;
    let small_png = std::fs::read(fixture("china_64x48.png")).unwrap();
    let mut text = b"Comment\0\0".to_vec();
    text.extend(zlib_zeros(inflated));
    let mut icc = b"ICC profile\0\0".to_vec();
    icc.extend(zlib_zeros(inflated));
    let rows = |w: u32, h: u32| u64::from(h) * (u64::from(w) + 1);
    let under_limit = |w: u32, h: u32| u64::from(w) * u64::from(h) <= pixels;
    assert!(under_limit(side, side) && !under_limit(over, over));
    // 0: the general bound for the file's size.
    let big = 0;
    let list: Vec<(String, Vec<u8>, u64)> = vec![
        (
            format!("png-zeros {side}x{side} (just under the pixel limit)"),
            png_zeros(side, side, rows(side, side)),
            big,
        ),
        (
            format!("png-zeros {over}x{over} (just over the pixel limit)"),
            png_zeros(over, over, rows(over, over)),
            big,
        ),
        (
            format!("png-zeros {pixels}x1 (one row at the pixel limit)"),
            png_zeros(pixels as u32, 1, rows(pixels as u32, 1)),
            big,
        ),
        (
            format!("png16-rgba {side}x{side} Adam7-interlaced (just under the pixel limit)"),
            png16_rgba_zeros(side, side, true),
            big,
        ),
        (
            format!("png16-rgba {pixels}x1 (one row at the pixel limit)"),
            png16_rgba_zeros(pixels as u32, 1, false),
            big,
        ),
        (
            "png-ztxt china_64x48.png + a zTXt chunk inflating to 400 MB".into(),
            with_chunk_after_ihdr(&small_png, png_chunk(b"zTXt", &text)),
            SMALL_IMAGE_BOUND,
        ),
        (
            "png-iccp china_64x48.png + an iCCP chunk inflating to 400 MB".into(),
            with_chunk_after_ihdr(&small_png, png_chunk(b"iCCP", &icc)),
            SMALL_IMAGE_BOUND,
        ),
        (
            "png-idat 64x48 grey whose IDAT inflates to 400 MB".into(),
            png_zeros(64, 48, inflated),
            SMALL_IMAGE_BOUND,
        ),
        (
            format!("gif-lzw {side}x{side} frame of zeros (just under the pixel limit)"),
            gif_zeros(
                (side as u16, side as u16),
                (side as u16, side as u16),
                u64::from(side) * u64::from(side),
            ),
            big,
        ),
        (
            "gif-lzw 65535x65535 screen and frame (over the pixel limit)".into(),
            gif_zeros((65535, 65535), (65535, 65535), 1 << 20),
            big,
        ),
        (
            format!("gif-lzw 64x48 screen, {side}x{side} frame of zeros"),
            gif_zeros(
                (64, 48),
                (side as u16, side as u16),
                u64::from(side) * u64::from(side),
            ),
            big,
        ),
        (
            "gif-lzw 64x48 screen, 15000x15000 frame of zeros (225 MP: over the pixel limit, \
             under the decoder's 1 GiB allocation limit)"
                .into(),
            gif_zeros((64, 48), (15000, 15000), 15000 * 15000),
            big,
        ),
        (
            format!("tiff-deflate {side}x{side} grey strip of zeros (just under the limit)"),
            tiff_deflate_zeros(side, side, u64::from(side) * u64::from(side)),
            big,
        ),
        (
            format!("tiff-deflate {over}x{over} (just over the pixel limit)"),
            tiff_deflate_zeros(over, over, 1 << 20),
            big,
        ),
        (
            "tiff-deflate 64x48 grey whose strip inflates to 400 MB".into(),
            tiff_deflate_zeros(64, 48, inflated),
            SMALL_IMAGE_BOUND,
        ),
    ];
    let mut list = list;
    list.push((
        "webp-exif china_exif.webp whose EXIF chunk declares 0xF0000000 bytes".into(),
        webp_exif_claiming(0xf000_0000),
        SMALL_IMAGE_BOUND,
    ));
    list.into_iter()
        .map(|(recipe, bytes, bound)| Input {
            id: String::new(),
            recipe: format!("{recipe} ({} bytes)", bytes.len()),
            bound: match bound {
                0 => memory_bound(bytes.len()),
                small => small,
            },
            bytes,
            bomb: true,
        })
        .collect()
}

/// The generators make what they claim: small versions decode to black images of their size,
/// and the text and ICC bombs leave the picture readable.
fn check_generators() {
    let limits = Limits::default();
    let black = |bytes: &[u8], w: u32, h: u32, what: &str| {
        let decoded = decode_bytes(bytes, 0, &limits).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(decoded.image.dimensions(), (w, h), "{what}");
        assert!(decoded.image.as_raw().iter().all(|&v| v == 0), "{what}");
    };
    black(&png_zeros(300, 200, 200 * 301), 300, 200, "png_zeros");
    black(&png_zeros(64, 48, 48 * 65), 64, 48, "png_zeros 64x48");
    for pixels in [1, 2, 3, 1000, 60_000, 3000 * 2000] {
        let (w, h) = match pixels {
            60_000 => (300, 200),
            6_000_000 => (3000, 2000),
            n => (n as u16, 1),
        };
        black(
            &gif_zeros((w, h), (w, h), pixels),
            u32::from(w),
            u32::from(h),
            &format!("gif_zeros {pixels}"),
        );
    }
    black(
        &tiff_deflate_zeros(300, 200, 60_000),
        300,
        200,
        "tiff_deflate_zeros",
    );
    for interlaced in [false, true] {
        let png = png16_rgba_zeros(37, 21, interlaced);
        let decoded = decode_bytes(&png, 0, &limits).expect("png16_rgba_zeros");
        assert_eq!(decoded.image.dimensions(), (37, 21));
        // Transparent: white once composited.
        assert!(decoded.image.as_raw().iter().all(|&v| v == 255));
    }
    let small_png = std::fs::read(fixture("china_64x48.png")).unwrap();
    let mut text = b"Comment\0\0".to_vec();
    text.extend(zlib_zeros(1000));
    let with_text = with_chunk_after_ihdr(&small_png, png_chunk(b"zTXt", &text));
    assert_eq!(
        decode_bytes(&with_text, 0, &limits)
            .expect("a zTXt chunk is no error")
            .image
            .dimensions(),
        (64, 48)
    );
}

// ---- results ----

struct Stats {
    target: &'static str,
    inputs: usize,
    panics: usize,
    failures: usize,
    outcomes: BTreeMap<String, usize>,
    times: Vec<Duration>,
    /// Per input: (peak heap, peak RSS growth, the input's bound).
    memory: Vec<(u64, u64, u64)>,
    rss_peak: u64,
    slowest: Option<(Duration, Input)>,
    most_heap: (u64, String),
    most_rss: (u64, String),
    /// The most heap an input within its bound took, and that input.
    most_heap_within: (u64, String),
    /// Each bomb's outcome, time and memory.
    bombs: Vec<Value>,
    /// Inputs per kind of mutation (the recipe's word after the seed).
    mutations: BTreeMap<String, usize>,
    extra: serde_json::Map<String, Value>,
}

impl Stats {
    fn new(target: &'static str) -> Stats {
        Stats {
            target,
            inputs: 0,
            panics: 0,
            failures: 0,
            outcomes: BTreeMap::new(),
            times: Vec::new(),
            memory: Vec::new(),
            rss_peak: 0,
            slowest: None,
            most_heap: (0, String::new()),
            most_rss: (0, String::new()),
            most_heap_within: (0, String::new()),
            bombs: Vec::new(),
            mutations: BTreeMap::new(),
            extra: serde_json::Map::new(),
        }
    }

    fn record(&mut self, input: &Input, m: &Measure, outcome: String) {
        if input.bomb {
            self.bombs.push(json!({
                "bomb": input.recipe,
                "outcome": outcome,
                "ms": (m.time.as_secs_f64() * 1e4).round() / 10.0,
                "heap_mb": m.heap / MB,
                "rss_growth_mb": m.rss_growth / MB,
            }));
        }
        let kind = match input.recipe.split_once(": ") {
            _ if input.bomb => "bomb",
            Some((_, how)) => how.split(['(', ' ']).next().unwrap_or("?"),
            None => "?",
        };
        *self.mutations.entry(kind.to_owned()).or_default() += 1;
        self.inputs += 1;
        *self.outcomes.entry(outcome).or_default() += 1;
        self.times.push(m.time);
        self.memory.push((m.heap, m.rss_growth, input.bound));
        self.rss_peak = self.rss_peak.max(m.rss_peak);
        if self.slowest.as_ref().is_none_or(|(t, _)| m.time > *t) {
            self.slowest = Some((m.time, input.clone()));
        }
        if m.heap > self.most_heap.0 {
            self.most_heap = (m.heap, input.recipe.clone());
        }
        let within = m.heap <= input.bound && m.rss_growth <= input.bound;
        if within && m.heap > self.most_heap_within.0 {
            self.most_heap_within = (m.heap, input.recipe.clone());
        }
        if m.rss_growth > self.most_rss.0 {
            self.most_rss = (m.rss_growth, input.recipe.clone());
        }
    }

    fn json(&self) -> Value {
        fn median_and_max<T: Copy + Ord>(v: &[T]) -> Option<(T, T)> {
            let mut sorted = v.to_vec();
            sorted.sort_unstable();
            Some((*sorted.get(sorted.len() / 2)?, *sorted.last()?))
        }
        let mb = |bytes: u64| (bytes as f64 / MB as f64 * 1000.0).round() / 1000.0;
        let ms = |t: Duration| (t.as_secs_f64() * 1e5).round() / 100.0;
        let (time_median, time_max) = median_and_max(&self.times).unwrap_or_default();
        // Median, 99th percentile, maximum, and maximum over the inputs within their bound
        // (what the code does once the inputs over it are fixed).
        let figures = |pick: fn(&(u64, u64, u64)) -> u64| {
            let mut sorted: Vec<u64> = self.memory.iter().map(pick).collect();
            sorted.sort_unstable();
            let at = |q: f64| {
                sorted
                    .get(((sorted.len() as f64 - 1.0) * q) as usize)
                    .copied()
            };
            let within = self
                .memory
                .iter()
                .filter(|m| m.0 <= m.2 && m.1 <= m.2)
                .map(pick)
                .max();
            json!({
                "median": mb(at(0.5).unwrap_or(0)),
                "p99": mb(at(0.99).unwrap_or(0)),
                "max": mb(at(1.0).unwrap_or(0)),
                "max_within_bound": mb(within.unwrap_or(0)),
            })
        };
        let seconds: f64 = self.times.iter().map(Duration::as_secs_f64).sum();
        let ok = self
            .outcomes
            .iter()
            .filter(|(k, _)| k.starts_with("ok") || k.starts_with("2"))
            .map(|(_, n)| n)
            .sum::<usize>();
        let mut line = json!({
            "target": self.target,
            "inputs": self.inputs,
            "panics": self.panics,
            "failures": self.failures,
            "ok": ok,
            "outcomes": self.outcomes,
            "mutations": self.mutations,
            "ms": {"median": ms(time_median), "max": ms(time_max)},
            "slowest": self.slowest.as_ref().map(|(_, input)| &input.recipe),
            "heap_mb": figures(|m| m.0),
            "heap_max_input": self.most_heap.1,
            "heap_max_within_bound_input": self.most_heap_within.1,
            "rss_growth_mb": figures(|m| m.1),
            "rss_max_input": self.most_rss.1,
            "rss_peak_mb": mb(self.rss_peak),
            "seconds": (seconds * 10.0).round() / 10.0,
            "inputs_per_s": ((self.inputs as f64 / seconds.max(1e-9)) * 10.0).round() / 10.0,
        });
        line.as_object_mut().unwrap().extend(self.extra.clone());
        if !self.bombs.is_empty() {
            line["bombs"] = json!(self.bombs);
        }
        line
    }
}

/// Failing inputs, saved with their recipe.
struct Findings {
    dir: PathBuf,
    failures: Vec<String>,
}

impl Findings {
    fn save(&self, name: &str, input: &Input, why: &str) {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let _ = std::fs::write(self.dir.join(format!("{name}.bin")), &input.bytes);
        let _ = std::fs::write(
            self.dir.join(format!("{name}.txt")),
            format!(
                "{why}\n{}\nreplay: LOOKALIKE_FUZZ_SEED=<seed> LOOKALIKE_FUZZ_ONLY={} cargo test --test fuzz -- --nocapture\n",
                input.recipe,
                input.id.replacen('-', ":", 1),
            ),
        );
    }

    fn fail(&mut self, stats: &mut Stats, input: &Input, why: String) {
        let message = format!("{}: {why}\n  input: {}", stats.target, input.recipe);
        eprintln!("FUZZ FAILURE {message}");
        stats.failures += 1;
        self.save(&format!("{}-{}", stats.target, input.id), input, &why);
        self.failures.push(message);
    }

    /// The panics and memory bound of one measured input.
    fn check(&mut self, stats: &mut Stats, input: &Input, m: &Measure, panic: Option<String>) {
        if panic.is_some() || m.panics > 0 {
            stats.panics += 1;
            let why = format!(
                "panic ({} on any thread): {}",
                m.panics,
                panic.as_deref().unwrap_or("on another thread")
            );
            self.fail(stats, input, why);
        }
        if m.heap > input.bound || m.rss_growth > input.bound {
            let why = format!(
                "memory over the bound of {} MB: heap {} MB, RSS growth {} MB",
                input.bound / MB,
                m.heap / MB,
                m.rss_growth / MB
            );
            self.fail(stats, input, why);
        }
    }

    /// Before each input: its recipe, for when a C decoder takes the process down.
    fn note_current(&self, input: &Input) {
        let _ = std::fs::write(self.dir.join("current.txt"), &input.recipe);
    }
}

/// The variant of an error from its Debug form ("Corrupt { .. }" -> "Corrupt").
fn variant(debug: &str) -> &str {
    let end = debug
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(debug.len());
    &debug[..end]
}

fn format_of(bytes: &[u8]) -> String {
    sniff(bytes).map_or_else(|| "none".to_owned(), |f| f.to_string())
}

// ---- targets ----

fn fuzz_decoders(cfg: &Config, findings: &mut Findings, bombs: &[Input]) -> Vec<Stats> {
    let seeds = image_seeds();
    let limits = Limits::default();
    let mut stats = [
        Stats::new("decode_bytes min_side=0"),
        Stats::new("decode_bytes min_side=224"),
        Stats::new("PhotoFacts::of_bytes"),
    ];
    stats[0].extra.insert("seeds".into(), json!(seeds.len()));
    for iteration in cfg.iterations("decode", cfg.inputs) {
        let input = make_input(cfg, "decode", iteration, &seeds, bombs, false);
        findings.note_current(&input);
        if cfg.only.is_some() {
            findings.save(&format!("replay-{}", input.id), &input, "replayed");
        }
        let format = format_of(&input.bytes);
        for (target, min_side) in [(0, 0), (1, 224)] {
            let probe = Probe::start();
            let result = guarded(|| decode_bytes(&input.bytes, min_side, &limits));
            let m = probe.finish();
            let (outcome, panic) = match result {
                Ok(Ok(decoded)) => (format!("ok {}", decoded.format), None),
                Ok(Err(e)) => (format!("{} {format}", variant(&format!("{e:?}"))), None),
                Err(message) => ("panic".to_owned(), Some(message)),
            };
            let stats = &mut stats[target];
            stats.record(&input, &m, outcome);
            findings.check(stats, &input, &m, panic);
        }
        let probe = Probe::start();
        let result = guarded(|| PhotoFacts::of_bytes(&input.bytes));
        let m = probe.finish();
        let (outcome, panic) = match result {
            Ok(facts) if facts.is_empty() => ("ok, no facts".to_owned(), None),
            Ok(_) => ("ok, facts".to_owned(), None),
            Err(message) => ("panic".to_owned(), Some(message)),
        };
        stats[2].record(&input, &m, outcome);
        findings.check(&mut stats[2], &input, &m, panic);
    }
    stats.into()
}

const TOKEN: &str = "fuzz-token-18";

fn fuzz_uploads(cfg: &Config, findings: &mut Findings, bombs: &[Input]) -> Stats {
    let mut stats = Stats::new("upload (POST /api/search, /api/items)");
    let iterations = cfg.iterations("upload", cfg.uploads);
    if iterations.is_empty() {
        return stats;
    }
    let seeds = image_seeds();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let collection = root.join("photos");
    std::fs::create_dir_all(&collection).unwrap();
    for seed in seeds.iter().filter(|s| s.name.starts_with("photos/")) {
        let name = seed.name.rsplit('/').next().unwrap();
        std::fs::write(collection.join(name), &seed.bytes).unwrap();
    }
    let options = EngineOptions::new(dir.path().join("db"), model_dir());
    let engine = Arc::new(Engine::open(&options).expect("open the engine (is the model fetched?)"));
    engine
        .index_paths(&[collection], &Default::default())
        .expect("index the photos");
    let config = writable(TOKEN, &root);
    let server = Running::start(config, engine);
    let client = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // One search first, unmeasured: ONNX Runtime sizes its buffers on the first run.
    let warm_up = client
        .post(server.url("/api/search?k=3"))
        .header(reqwest::header::CONTENT_TYPE, "image/jpeg")
        .body(std::fs::read(photo(PHOTOS[0])).unwrap())
        .send()
        .unwrap();
    assert_eq!(warm_up.status().as_u16(), 200, "a real photo is searched");
    for iteration in iterations {
        let mut input = make_input(cfg, "upload", iteration, &seeds, bombs, false);
        let mut rng = Rng::with_seed(input_seed(cfg.seed, "upload-route", iteration));
        let add = rng.u8(0..5) == 0;
        let path = if add { "/api/items" } else { "/api/search?k=3" };
        let raw_type = if rng.bool() {
            Some(
                [
                    "image/jpeg",
                    "image/png",
                    "application/octet-stream",
                    "image/heic",
                ][rng.usize(..4)],
            )
        } else {
            None
        };
        input.recipe += &format!(
            " -> POST {path} as {}",
            raw_type.map_or("multipart field \"image\"".to_owned(), |t| format!(
                "raw {t}"
            ))
        );
        findings.note_current(&input);
        if cfg.only.is_some() {
            findings.save(&format!("replay-{}", input.id), &input, "replayed");
        }
        let probe = Probe::start();
        let result = guarded(|| {
            let mut request = client.post(server.url(path));
            if add {
                request = request.bearer_auth(TOKEN);
            }
            request = match raw_type {
                Some(content_type) => request
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(input.bytes.clone()),
                None => request.multipart(multipart::Form::new().part(
                    "image",
                    multipart::Part::bytes(input.bytes.clone()).file_name("upload"),
                )),
            };
            let response = request.send()?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = response.bytes()?;
            Ok::<_, reqwest::Error>((status, content_type, body))
        });
        let m = probe.finish();
        let (outcome, panic, problem) = match result {
            Err(message) => ("panic".to_owned(), Some(message), None),
            Ok(Err(e)) => (
                "transport error".to_owned(),
                None,
                Some(format!("no answer: {e}")),
            ),
            Ok(Ok((status, content_type, body))) => {
                let (outcome, problem) = check_answer(status, &content_type, &body, add);
                (outcome, None, problem)
            }
        };
        stats.record(&input, &m, outcome);
        findings.check(&mut stats, &input, &m, panic);
        if let Some(problem) = problem {
            findings.fail(&mut stats, &input, problem);
        }
    }
    let health = client.get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status().as_u16(), 200, "healthz after fuzzing");
    assert_eq!(health.json::<Value>().unwrap(), json!({"status": "ok"}));
    stats.extra.insert("healthz_after".into(), json!("ok"));
    server.shutdown().expect("the server stops cleanly");
    stats
}

/// The outcome of an upload ("422 corrupt_image", "200") and what is wrong with the answer:
/// a 5xx (503 included: requests are sent one at a time, so no inference slot is ever busy),
/// an error that is not `{"error": {"code", "message"}}` JSON, a success without its fields.
fn check_answer(
    status: u16,
    content_type: &str,
    body: &[u8],
    add: bool,
) -> (String, Option<String>) {
    let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if status >= 400 {
        let code = json
            .as_ref()
            .and_then(|v| v["error"]["code"].as_str())
            .unwrap_or("")
            .to_owned();
        let outcome = format!("{status} {code}");
        if status >= 500 {
            return (outcome, Some(format!("status {status}: {}", text())));
        }
        let message = json.as_ref().and_then(|v| v["error"]["message"].as_str());
        if !content_type.starts_with("application/json")
            || code.is_empty()
            || message.is_none_or(|m| m.len() < 5)
        {
            return (
                outcome,
                Some(format!("not a JSON error ({content_type}): {}", text())),
            );
        }
        return (outcome, None);
    }
    let fine = json.as_ref().is_some_and(|v| {
        if add {
            v["id"].is_i64()
        } else {
            v["results"].is_array()
        }
    });
    let outcome = status.to_string();
    if !fine {
        return (
            outcome,
            Some(format!("status {status} without its fields: {}", text())),
        );
    }
    (outcome, None)
}

fn fuzz_videos(cfg: &Config, findings: &mut Findings, bombs: &[Input]) -> Stats {
    let mut stats = Stats::new("video (FrameReader, ffmpeg)");
    let seeds = video_seeds();
    // Image bombs given to ffmpeg as videos: the largest 8-bit PNG and GIF under the limit.
    let video_bombs: Vec<Input> = bombs
        .iter()
        .filter(|b| {
            b.recipe.contains("just under")
                && (b.recipe.starts_with("png-zeros") || b.recipe.starts_with("gif-lzw"))
        })
        .cloned()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.mp4");
    let options = VideoOptions::default();
    let limits = Limits::default();
    // next_frame gives up after one stall timeout and finish waits one more.
    let time_bound = options.stall_timeout * 2 + Duration::from_secs(30);
    let mut ffmpeg_peak = 0;
    for iteration in cfg.iterations("video", cfg.videos) {
        let input = make_input(cfg, "video", iteration, &seeds, &video_bombs, true);
        findings.note_current(&input);
        if cfg.only.is_some() {
            findings.save(&format!("replay-{}", input.id), &input, "replayed");
        }
        std::fs::write(&path, &input.bytes).unwrap();
        let probe = Probe::start();
        let result = guarded(|| {
            let mut reader = FrameReader::spawn(&path, &options, 224, limits.max_pixels)?;
            let mut frames = 0;
            let error = loop {
                match reader.next_frame() {
                    Ok(Some(_)) => frames += 1,
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            let summary = reader.finish();
            Ok::<_, lookalike::video::VideoError>((frames, error, summary))
        });
        let m = probe.finish();
        let (outcome, panic) = match result {
            Err(message) => ("panic".to_owned(), Some(message)),
            Ok(Err(e)) => (format!("spawn {}", variant(&format!("{e:?}"))), None),
            Ok(Ok((frames, Some(e), _))) => (
                format!(
                    "{} after {} frames",
                    variant(&format!("{e:?}")),
                    if frames > 0 { "some" } else { "no" }
                ),
                None,
            ),
            Ok(Ok((0, None, _))) => ("no frames".to_owned(), None),
            Ok(Ok((_, None, summary))) => match summary.problem() {
                None => ("ok, frames, clean".to_owned(), None),
                Some(_) => ("ok, frames, decoder errors logged".to_owned(), None),
            },
        };
        stats.record(&input, &m, outcome);
        findings.check(&mut stats, &input, &m, panic);
        if m.time > time_bound {
            let why = format!("took {:?}, over the bound of {time_bound:?}", m.time);
            findings.fail(&mut stats, &input, why);
        }
        let peak = children_peak_rss();
        if peak > ffmpeg_peak {
            ffmpeg_peak = peak;
            stats
                .extra
                .insert("ffmpeg_rss_peak_input".into(), json!(input.recipe.clone()));
        }
    }
    stats.extra.insert(
        "ffmpeg_rss_peak_mb".into(),
        json!((ffmpeg_peak as f64 / MB as f64).round()),
    );
    stats
}

#[test]
fn fuzz_decoders_uploads_and_videos() {
    let cfg = Config::from_env();
    std::fs::create_dir_all(&cfg.findings).unwrap();
    let mut findings = Findings {
        dir: cfg.findings.clone(),
        failures: Vec::new(),
    };
    count_panics();
    check_generators();
    let bombs = bombs();
    println!(
        "{}",
        json!({
            "fuzz": {
                "seed": cfg.seed,
                "decoder_inputs": cfg.inputs,
                "uploads": cfg.uploads,
                "videos": cfg.videos,
                "bombs": bombs.len(),
                "release": !cfg!(debug_assertions),
                "memory_bound_mb": memory_bound(0) / MB,
                "small_image_bound_mb": SMALL_IMAGE_BOUND / MB,
                "findings": cfg.findings,
            }
        })
    );
    let started = Instant::now();
    let mut all = fuzz_decoders(&cfg, &mut findings, &bombs);
    all.push(fuzz_videos(&cfg, &mut findings, &bombs));
    all.push(fuzz_uploads(&cfg, &mut findings, &bombs));
    for stats in &all {
        println!("{}", stats.json());
        if let Some((time, input)) = stats.slowest.as_ref().filter(|_| !cfg.replaying()) {
            let why = format!("the slowest input of this run: {time:?}");
            findings.save(&format!("slowest-{}", stats.target), input, &why);
        }
    }
    println!(
        "{}",
        json!({"fuzz_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0})
    );
    assert!(
        findings.failures.is_empty(),
        "{} failures (inputs saved in {}):\n{}",
        findings.failures.len(),
        cfg.findings.display(),
        findings.failures.join("\n")
    );
}
