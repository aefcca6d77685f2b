//! A minimal safe wrapper over libjpeg-turbo's TurboJPEG 3 decompression API, reached through
//! the `turbojpeg` crate's raw bindings.
//!
//! Why not `turbojpeg::Decompressor`: it reports libjpeg *warnings* as errors, and its
//! `decompress` re-reads the header first, so a JPEG with a harmless warning in its header
//! ("extraneous bytes before marker", an unknown JFIF revision, a bad ICC marker: common in
//! camera and editor output that Pillow opens fine) could not be decoded at all. Here a warning
//! is reported apart from fatal errors so the caller may tolerate it, and the scan limit that guards
//! against progressive-JPEG denial of service can be set.

use std::ffi::CStr;

use turbojpeg::libc::{c_int, c_ulong};
use turbojpeg::raw;

/// A call that finished, possibly after a libjpeg warning (the header or pixels are complete,
/// if perhaps damaged); `Err` carries the message of a fatal error.
pub(super) type Outcome<T> = Result<(T, Option<String>), String>;

/// Output pixel layouts used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PixelFormat {
    Rgb,
    /// For CMYK and YCCK JPEGs, which libjpeg cannot convert to RGB itself.
    Cmyk,
}

impl PixelFormat {
    pub(super) fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb => 3,
            PixelFormat::Cmyk => 4,
        }
    }

    fn raw(self) -> c_int {
        match self {
            PixelFormat::Rgb => raw::TJPF_TJPF_RGB,
            PixelFormat::Cmyk => raw::TJPF_TJPF_CMYK,
        }
    }
}

/// What the header says.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    pub width: u32,
    pub height: u32,
    /// Samples of CMYK or YCCK JPEGs decode only to CMYK.
    pub cmyk: bool,
    pub lossless: bool,
    pub progressive: bool,
    /// Chroma subsampling (a `TJSAMP_*` value; -1 for layouts TurboJPEG has no name for).
    pub subsamp: c_int,
    /// Bits per sample; only 8 is decoded here.
    pub precision: i32,
}

impl Header {
    /// Whether a 1/8-scale decode reads only DC coefficients. libjpeg (`jdmaster.c`) gives a
    /// component subsampled both horizontally and vertically (4:2:0) a 2x2 inverse DCT at
    /// 1/8 scale, saving the upsampling but reading AC coefficients; every other known layout
    /// uses 1x1 inverse DCTs, which read the DC coefficient alone.
    pub(super) fn dc_only_at_one_eighth(&self) -> bool {
        [
            raw::TJSAMP_TJSAMP_444,
            raw::TJSAMP_TJSAMP_GRAY,
            raw::TJSAMP_TJSAMP_422,
            raw::TJSAMP_TJSAMP_440,
            raw::TJSAMP_TJSAMP_411,
            raw::TJSAMP_TJSAMP_441,
        ]
        .contains(&self.subsamp)
    }
}

/// An owned TurboJPEG decompression instance (a non-null `tjhandle`).
pub(super) struct Decompressor(raw::tjhandle);

// SAFETY: a TurboJPEG instance is not tied to the thread that created it; it only must not be
// used from two threads at once, which `&mut self` on every call guarantees.
unsafe impl Send for Decompressor {}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init, is non-null and is destroyed exactly once.
        unsafe { raw::tj3Destroy(self.0) }
    }
}

/// Most progressive scans accepted: real encoders write ~10; thousands of tiny scans are the
/// known way to make libjpeg spin for minutes on a small file.
const SCAN_LIMIT: c_int = 500;

impl Decompressor {
    pub(super) fn new() -> Result<Self, String> {
        // SAFETY: plain constructor; a null return is handled below.
        let handle = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_DECOMPRESS as c_int) };
        if handle.is_null() {
            return Err("could not initialise the JPEG decoder (out of memory?)".into());
        }
        let mut this = Decompressor(handle);
        // SAFETY: valid handle; a known parameter with a valid value.
        let rc =
            unsafe { raw::tj3Set(this.0, raw::TJPARAM_TJPARAM_SCANLIMIT as c_int, SCAN_LIMIT) };
        this.check(rc)?;
        Ok(this)
    }

    fn get(&mut self, param: raw::TJPARAM) -> c_int {
        // SAFETY: valid handle; unknown params return -1.
        unsafe { raw::tj3Get(self.0, param as c_int) }
    }

    /// Turns a TurboJPEG return code into `Ok(warning)` or `Err(fatal message)`.
    fn check(&mut self, rc: c_int) -> Result<Option<String>, String> {
        if rc == 0 {
            return Ok(None);
        }
        // SAFETY: valid handle; tj3GetErrorStr returns a NUL-terminated string owned by
        // TurboJPEG (per instance or thread-local), copied out at once.
        let (message, code) = unsafe {
            let text = CStr::from_ptr(raw::tj3GetErrorStr(self.0));
            (
                text.to_string_lossy().into_owned(),
                raw::tj3GetErrorCode(self.0),
            )
        };
        if code == raw::TJERR_TJERR_WARNING as c_int {
            Ok(Some(message))
        } else {
            Err(message)
        }
    }

    /// Parses the header (no pixel memory is allocated).
    pub(super) fn read_header(&mut self, jpeg: &[u8]) -> Outcome<Header> {
        // SAFETY: valid handle; the pointer and length describe a live slice.
        let rc = unsafe { raw::tj3DecompressHeader(self.0, jpeg.as_ptr(), jpeg.len() as c_ulong) };
        let warning = self.check(rc)?;
        let colorspace = self.get(raw::TJPARAM_TJPARAM_COLORSPACE);
        let header = Header {
            width: u32::try_from(self.get(raw::TJPARAM_TJPARAM_JPEGWIDTH)).unwrap_or(0),
            height: u32::try_from(self.get(raw::TJPARAM_TJPARAM_JPEGHEIGHT)).unwrap_or(0),
            cmyk: colorspace == raw::TJCS_TJCS_CMYK as c_int
                || colorspace == raw::TJCS_TJCS_YCCK as c_int,
            lossless: self.get(raw::TJPARAM_TJPARAM_LOSSLESS) == 1,
            progressive: self.get(raw::TJPARAM_TJPARAM_PROGRESSIVE) == 1,
            subsamp: self.get(raw::TJPARAM_TJPARAM_SUBSAMP),
            precision: self.get(raw::TJPARAM_TJPARAM_PRECISION),
        };
        Ok((header, warning))
    }

    /// Decodes `jpeg`, whose header [`Self::read_header`] returned as `header`, at
    /// 1/`denominator` scale (1, 2, 4 or 8). Returns the packed pixels and their width and
    /// height. The caller must have checked the header's size against its limits: this
    /// allocates the output.
    pub(super) fn decompress(
        &mut self,
        jpeg: &[u8],
        header: &Header,
        denominator: u32,
        format: PixelFormat,
    ) -> Outcome<(Vec<u8>, u32, u32)> {
        let factor = raw::tjscalingfactor {
            num: 1,
            denom: denominator as c_int,
        };
        // SAFETY: valid handle; TurboJPEG rejects unsupported factors with an error.
        let rc = unsafe { raw::tj3SetScalingFactor(self.0, factor) };
        self.check(rc)?;
        let (width, height) = (
            scaled(header.width, denominator),
            scaled(header.height, denominator),
        );
        let pitch = width as usize * format.bytes_per_pixel();
        let mut pixels = vec![0u8; pitch * height as usize];
        let pitch_c = c_int::try_from(pitch).map_err(|_| "image row too long".to_string())?;
        // SAFETY: valid handle; `pixels` holds `height` rows of `pitch` bytes, the scaled size
        // TurboJPEG computes (TJSCALED) from the same data's header and the factor set above.
        let rc = unsafe {
            raw::tj3Decompress8(
                self.0,
                jpeg.as_ptr(),
                jpeg.len() as c_ulong,
                pixels.as_mut_ptr(),
                pitch_c,
                format.raw(),
            )
        };
        let warning = self.check(rc)?;
        Ok(((pixels, width, height), warning))
    }
}

/// A dimension after DCT scaling by 1/`denominator`, rounded up as TurboJPEG's `TJSCALED`.
pub(super) fn scaled(dimension: u32, denominator: u32) -> u32 {
    dimension.div_ceil(denominator)
}
