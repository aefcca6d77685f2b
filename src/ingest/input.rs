//! What ingestion reads: files on this machine (found by a scan or listed in a manifest), or
//! files carried in a tar stream (what the Spark job pipes to `lookalike embed`, and the
//! WebDataset shards people already keep). Each input has the key it is stored under (its
//! path), its stamp, and where its bytes are.

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

use crate::index::FileStamp;
use crate::video::is_supported_video;

use super::scan::{self, ScanPlan};

/// One file to ingest.
#[derive(Debug)]
pub struct Input {
    /// The path the file is stored under (in the index or a shard).
    pub key: String,
    pub stamp: FileStamp,
    pub content: Content,
}

/// Where an input's bytes are.
#[derive(Debug)]
pub enum Content {
    /// A file on this machine, read when its turn comes.
    File(PathBuf),
    /// The bytes themselves, carried by a stream.
    Bytes(Vec<u8>),
    /// A video from a stream, written to a temporary file for ffmpeg (removed when dropped).
    Spooled(tempfile::TempPath),
}

impl Content {
    /// The file to hand to a program that reads files (ffmpeg), if the content is in one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Content::File(path) => Some(path),
            Content::Spooled(path) => Some(path),
            Content::Bytes(_) => None,
        }
    }
}

impl Input {
    /// Videos take their own road through the pipeline (see [`crate::video`]); the key's
    /// extension decides, as for a scanned file.
    pub fn is_video(&self) -> bool {
        is_supported_video(Path::new(&self.key))
    }
}

/// A file that cannot even become an input (a manifest line naming a missing file), reported
/// like any other failure.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub key: String,
    pub reason: String,
}

/// Where a run's inputs come from.
pub enum Source {
    /// Files known up front, in order.
    Files(Vec<Input>),
    /// A tar archive read as it arrives: every regular file in it is an input named by its
    /// member name. The bytes of one member at a time are in memory.
    Tar(Box<dyn Read + Send>),
}

impl Source {
    /// How many inputs, when known before reading them.
    pub fn known_len(&self) -> Option<usize> {
        match self {
            Source::Files(inputs) => Some(inputs.len()),
            Source::Tar(_) => None,
        }
    }
}

/// The files a scan found to (re)index as inputs, and those it could not read (a path that
/// is not UTF-8 cannot be a key).
pub fn from_scan(plan: ScanPlan) -> (Vec<Input>, Vec<Unreadable>) {
    let mut inputs = Vec::with_capacity(plan.to_index.len());
    let mut unreadable: Vec<Unreadable> = plan
        .unreadable
        .into_iter()
        .map(|(path, reason)| Unreadable {
            key: path.to_string_lossy().into_owned(),
            reason,
        })
        .collect();
    for candidate in plan.to_index {
        match candidate.path.to_str() {
            Some(key) => inputs.push(Input {
                key: key.to_owned(),
                stamp: candidate.stamp,
                content: Content::File(candidate.path),
            }),
            None => unreadable.push(Unreadable {
                key: candidate.path.to_string_lossy().into_owned(),
                reason: "path is not valid UTF-8".into(),
            }),
        }
    }
    (inputs, unreadable)
}

/// The local files named by a manifest: one path per line (relative ones are taken from the
/// current directory); blank lines and lines starting with `#` are skipped. Each becomes an
/// input keyed by its absolute, symlink-free path, as `index` would store it; a line naming
/// nothing readable, or a file of a kind lookalike does not index, is reported.
pub fn read_manifest(reader: impl BufRead) -> io::Result<(Vec<Input>, Vec<Unreadable>)> {
    let mut inputs = Vec::new();
    let mut unreadable = Vec::new();
    for line in reader.lines() {
        let line = line?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match local_input(Path::new(line)) {
            Ok(input) => inputs.push(input),
            Err(reason) => unreadable.push(Unreadable {
                key: line.to_owned(),
                reason,
            }),
        }
    }
    Ok((inputs, unreadable))
}

/// The input for one local file named by a manifest.
fn local_input(path: &Path) -> Result<Input, String> {
    let canonical = path.canonicalize().map_err(|e| e.to_string())?;
    let metadata = std::fs::metadata(&canonical).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    if !scan::is_supported_image(&canonical) && !is_supported_video(&canonical) {
        return Err("not an image or video file lookalike indexes (by its extension)".into());
    }
    let key = canonical
        .to_str()
        .ok_or_else(|| "path is not valid UTF-8".to_owned())?
        .to_owned();
    Ok(Input {
        key,
        stamp: scan::stamp_of(&metadata),
        content: Content::File(canonical),
    })
}

/// Sorts items by key and keeps the `part`-th (from 0) of `parts` contiguous, near-equal
/// slices (`--part I/N`): N processes given the same list each take a disjoint share, and
/// together all of it. Duplicate keys are kept once.
pub fn take_part<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> &str,
    part: usize,
    parts: usize,
) -> Vec<T> {
    items.sort_by(|a, b| key(a).cmp(key(b)));
    items.dedup_by(|a, b| key(a) == key(b));
    let n = items.len();
    let (start, end) = (n * part / parts, n * (part + 1) / parts);
    items.truncate(end);
    items.drain(..start);
    items
}

/// Calls `each` with every regular file of a tar archive, in archive order, until it returns
/// false. The archive must end with its end-of-archive marker: a stream cut short (a sender
/// that died) is an error, so that a partial input is never taken for a whole one. Members
/// that are not regular files (folders, links) are skipped.
pub fn read_tar(
    reader: Box<dyn Read + Send>,
    mut each: impl FnMut(Result<Input, Unreadable>) -> bool,
) -> io::Result<()> {
    let mut reader = EofAware {
        inner: reader,
        hit_eof: false,
    };
    {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let key = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mtime_ns = pax_mtime_ns(&mut entry)?
                .or_else(|| {
                    let secs = entry.header().mtime().ok()?;
                    i64::try_from(secs).ok()?.checked_mul(1_000_000_000)
                })
                .unwrap_or(0);
            let size = entry.size();
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            entry.read_to_end(&mut bytes)?;
            let input = Input {
                key,
                stamp: FileStamp { size, mtime_ns },
                content: Content::Bytes(bytes),
            };
            if !each(Ok(input)) {
                return Ok(());
            }
        }
    }
    if reader.hit_eof {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the tar stream ended without its end-of-archive marker (cut short?)",
        ));
    }
    // Drain the archive's trailing padding, so that a sender writing it never sees a broken pipe.
    io::copy(&mut reader.inner, &mut io::sink())?;
    Ok(())
}

/// The exact modification time of a member from its PAX `mtime` record ("SECONDS[.FRACTION]",
/// read as a decimal string: a float would lose the nanoseconds).
fn pax_mtime_ns<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Option<i64>> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(None);
    };
    for extension in extensions {
        let extension = extension?;
        if extension.key_bytes() == b"mtime" {
            return Ok(std::str::from_utf8(extension.value_bytes())
                .ok()
                .and_then(parse_decimal_seconds));
        }
    }
    Ok(None)
}

/// "1700000000.123456789" -> nanoseconds since the epoch; None if it is not such a number.
fn parse_decimal_seconds(s: &str) -> Option<i64> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let negative = whole.starts_with('-');
    let secs: i64 = whole.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &fraction[..fraction.len().min(9)];
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10_i64.pow(9 - digits.len() as u32)
    };
    let nanos = if negative { -nanos } else { nanos };
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// A reader that remembers whether it reached the end of its input: the tar reader takes a
/// clean end of stream at a member boundary for the end of the archive, which it is not
/// unless the end-of-archive marker came first.
struct EofAware<R> {
    inner: R,
    hit_eof: bool,
}

impl<R: Read> Read for EofAware<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of (name, bytes, PAX mtime) members; the names go in PAX `path` records, as
    /// Python's tarfile writes names that do not fit the header (the tar crate refuses to put
    /// an absolute name in a header).
    fn tar_of(members: &[(&str, &[u8], Option<&str>)], finish: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes, pax_mtime) in members {
            let mut records = vec![("path", name.as_bytes())];
            records.extend(pax_mtime.map(|m| ("mtime", m.as_bytes())));
            builder.append_pax_extensions(records).unwrap();
            let mut header = tar::Header::new_ustar();
            header.set_path("member").unwrap();
            header.set_size(bytes.len() as u64);
            header.set_mtime(1_600_000_000);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append(&header, *bytes).unwrap();
        }
        if finish {
            builder.into_inner().unwrap()
        } else {
            builder.get_ref().clone()
        }
    }

    fn inputs_of(tar: Vec<u8>) -> io::Result<Vec<Input>> {
        let mut inputs = Vec::new();
        read_tar(Box::new(io::Cursor::new(tar)), |input| {
            inputs.push(input.unwrap());
            true
        })?;
        Ok(inputs)
    }

    #[test]
    fn tar_members_keep_their_names_sizes_and_exact_times() {
        let tar = tar_of(
            &[
                ("/data/a.jpg", b"abc", Some("1700000000.123456789")),
                ("photos/b.png", b"de", None),
            ],
            true,
        );
        let inputs = inputs_of(tar).unwrap();
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[0].key, "/data/a.jpg");
        assert_eq!(
            inputs[0].stamp,
            FileStamp {
                size: 3,
                mtime_ns: 1_700_000_000_123_456_789
            }
        );
        assert!(matches!(&inputs[0].content, Content::Bytes(b) if b == b"abc"));
        assert_eq!(inputs[1].key, "photos/b.png");
        assert_eq!(inputs[1].stamp.mtime_ns, 1_600_000_000 * 1_000_000_000);
    }

    #[test]
    fn a_tar_stream_cut_short_is_an_error_not_a_smaller_archive() {
        let tar = tar_of(&[("a.jpg", b"abc", None), ("b.jpg", b"xyz", None)], false);
        let err = inputs_of(tar).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[test]
    fn decimal_seconds_are_read_exactly() {
        assert_eq!(parse_decimal_seconds("12"), Some(12_000_000_000));
        assert_eq!(parse_decimal_seconds("12.5"), Some(12_500_000_000));
        assert_eq!(parse_decimal_seconds("12.0000000019"), Some(12_000_000_001));
        assert_eq!(parse_decimal_seconds("-1.5"), Some(-1_500_000_000));
        assert_eq!(parse_decimal_seconds("1e9"), None);
        assert_eq!(parse_decimal_seconds("1.2x"), None);
    }

    #[test]
    fn parts_split_the_sorted_list_into_disjoint_slices_that_cover_it() {
        let keys = vec!["e", "a", "d", "b", "c", "a", "g", "f"];
        let mut seen = Vec::new();
        for part in 0..3 {
            let slice = take_part(keys.clone(), |k: &&str| *k, part, 3);
            assert!((2..=3).contains(&slice.len()), "part {part}: {slice:?}");
            seen.extend(slice);
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e", "f", "g"]);
    }
}
