//! Reading ffmpeg's log (stderr, run with `-loglevel level+info`): the `showinfo` line of each
//! output frame gives its timestamp and source size, and `[error]` lines tell what could not
//! be decoded.

/// What one log line says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LogLine {
    /// A `showinfo` frame line: presentation time in seconds (from the start of the file) and
    /// the size of the frame before scaling.
    Frame {
        t: f64,
        width: u32,
        height: u32,
    },
    /// A decoding or demuxing error, without the `[context @ 0x..] [error]` prefixes.
    Error(String),
    Other,
}

/// Classifies one line of ffmpeg's stderr.
pub(crate) fn parse_line(line: &str) -> LogLine {
    if line.contains("Parsed_showinfo") {
        if let Some(t) = field(line, "pts_time:").and_then(|v| v.parse::<f64>().ok()) {
            let size = field(line, " s:").and_then(|v| {
                let (w, h) = v.split_once('x')?;
                Some((w.parse().ok()?, h.parse().ok()?))
            });
            let (width, height) = size.unwrap_or((0, 0));
            return LogLine::Frame { t, width, height };
        }
        return LogLine::Other;
    }
    for level in ["[error] ", "[fatal] ", "[panic] "] {
        if let Some(at) = line.find(level) {
            let context = line[..at].trim();
            let message = line[at + level.len()..].trim();
            if message.is_empty() {
                return LogLine::Other;
            }
            return LogLine::Error(if context.is_empty() {
                message.to_owned()
            } else {
                format!("{context} {message}")
            });
        }
    }
    LogLine::Other
}

/// The value after `key` up to the next whitespace (showinfo pads values with spaces after
/// the colon, e.g. `pts:      1`).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line[line.find(key)? + key.len()..].trim_start();
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn showinfo_lines_give_time_and_source_size() {
        // Verbatim from ffmpeg 5.1 on Megamind_bugy.avi.
        let line = "[Parsed_showinfo_1 @ 0x55ee5ceecbc0] [info] n:   2 pts:     99 \
                    pts_time:3.3     pos:   362546 fmt:yuv420p sar:1/1 s:720x528 i:P iskey:0 \
                    type:P checksum:16D4D0EC plane_checksum:[1008F063 C589CAFA F4311580]";
        assert_eq!(
            parse_line(line),
            LogLine::Frame {
                t: 3.3,
                width: 720,
                height: 528
            }
        );
    }

    #[test]
    fn showinfo_side_data_lines_are_not_frames() {
        let line = "[Parsed_showinfo_1 @ 0x55ee5ceecbc0] [info]   color_range:tv color_space:bt709";
        assert_eq!(parse_line(line), LogLine::Other);
    }

    #[test]
    fn error_lines_keep_context_and_message() {
        let line = "[msmpeg4 @ 0x5643eb786f40] [error] ac-tex damaged at 18 4";
        assert_eq!(
            parse_line(line),
            LogLine::Error("[msmpeg4 @ 0x5643eb786f40] ac-tex damaged at 18 4".into())
        );
        assert_eq!(
            parse_line("[error] x.mp4: Invalid data found when processing input"),
            LogLine::Error("x.mp4: Invalid data found when processing input".into())
        );
        assert_eq!(
            parse_line("[info] Stream mapping:"),
            LogLine::Other,
            "info lines are not errors"
        );
        assert_eq!(
            parse_line("[warning] corrupt decoded frame"),
            LogLine::Other
        );
    }
}
