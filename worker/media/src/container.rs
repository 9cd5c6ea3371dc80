//! A structural check of ISO-BMFF files (MP4, MOV, M4A) that catches truncation before decoding.
//!
//! FFmpeg reports a cut MP4 as "invalid data" (index gone) or, when the index comes first, quietly
//! decodes fewer frames. Walking the top-level boxes costs a few 8-byte reads and says exactly what
//! is missing: each box declares its size, so a file that ends inside a box is truncated.

use std::io::{Read, Seek, SeekFrom};

use crate::MediaError;

/// Top-level boxes walked at most; a real file has a handful.
const MAX_BOXES: usize = 100_000;

/// `Err(Truncated)` when `file` (of `size` bytes) is ISO-BMFF and ends inside a box or lacks the
/// `moov` index; `Ok` for a whole file or one of another format. `file` is a `File` in the steps,
/// any reader in the fuzz target.
///
/// # Errors
/// [`MediaError::Truncated`], or [`MediaError::Io`] when the file cannot be read.
pub fn check_iso_bmff<R: Read + Seek>(file: &mut R, size: u64) -> Result<(), MediaError> {
    let read_err = MediaError::io("reading the file");
    let Some(brand) = brand(file).map_err(read_err)? else {
        return Ok(());
    };
    let container = match brand.as_str() {
        "qt" => "MOV".to_string(),
        "M4A" => "M4A".to_string(),
        other => format!("MP4 (brand `{other}`)"),
    };
    let truncated = |detail: String| MediaError::Truncated { container: container.clone(), detail };
    let mut pos = 0u64;
    let (mut has_moov, mut walked) = (false, false);
    for _ in 0..MAX_BOXES {
        if pos + 8 > size {
            walked = true;
            break;
        }
        let (kind, declared) = box_header(file, pos, size).map_err(MediaError::io("reading the file"))?;
        has_moov |= &kind == b"moov";
        let name = String::from_utf8_lossy(&kind).into_owned();
        match declared {
            BoxSize::ToEnd => {
                walked = true;
                break;
            }
            BoxSize::Bytes(n) if n < 8 => {
                return Err(truncated(format!("box `{name}` at byte {pos} declares an impossible size of {n} bytes")));
            }
            BoxSize::Bytes(n) if n > size - pos => {
                return Err(truncated(format!(
                    "box `{name}` at byte {pos} declares {n} bytes, but the file ends {} bytes into it",
                    size - pos
                )));
            }
            BoxSize::Bytes(n) => pos += n,
            BoxSize::LargeSizeCut => {
                return Err(truncated(format!(
                    "box `{name}` at byte {pos} has a 64-bit size, but the file ends {} bytes into it",
                    size - pos
                )));
            }
        }
    }
    if walked && !has_moov {
        return Err(truncated(format!("no `moov` box (the index) in its {size} bytes")));
    }
    Ok(())
}

enum BoxSize {
    Bytes(u64),
    /// Size 0: the box runs to the end of the file.
    ToEnd,
    /// Size 1 (a 64-bit size follows) in a header the file ends inside.
    LargeSizeCut,
}

/// The major brand (trimmed) when the file starts with an `ftyp` box.
fn brand(file: &mut (impl Read + Seek)) -> std::io::Result<Option<String>> {
    let mut head = [0u8; 12];
    file.seek(SeekFrom::Start(0))?;
    if file.read(&mut head)? < head.len() || &head[4..8] != b"ftyp" {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&head[8..12]).trim().to_string()))
}

fn box_header(file: &mut (impl Read + Seek), pos: u64, size: u64) -> std::io::Result<([u8; 4], BoxSize)> {
    let mut header = [0u8; 8];
    file.seek(SeekFrom::Start(pos))?;
    file.read_exact(&mut header)?;
    let kind = [header[4], header[5], header[6], header[7]];
    let small = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let declared = match small {
        0 => BoxSize::ToEnd,
        1 if pos + 16 <= size => {
            let mut large = [0u8; 8];
            file.read_exact(&mut large)?;
            BoxSize::Bytes(u64::from_be_bytes(large))
        }
        1 => BoxSize::LargeSizeCut,
        n => BoxSize::Bytes(u64::from(n)),
    };
    Ok((kind, declared))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn mp4_boxes(boxes: &[(&[u8; 4], u32, usize)]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp");
        let mut bytes = Vec::new();
        for (kind, declared, actual) in boxes {
            bytes.extend(declared.to_be_bytes());
            bytes.extend(*kind);
            bytes.extend(std::iter::repeat_n(0u8, actual.saturating_sub(8)));
        }
        bytes[8..12].copy_from_slice(b"isom");
        file.write_all(&bytes).expect("write");
        file
    }

    fn check(file: &tempfile::NamedTempFile) -> Result<(), MediaError> {
        let size = file.as_file().metadata().expect("meta").len();
        check_iso_bmff(&mut file.reopen().expect("reopen"), size)
    }

    #[test]
    fn a_whole_file_passes_and_other_formats_are_not_judged() {
        assert!(check(&mp4_boxes(&[(b"ftyp", 24, 24), (b"moov", 100, 100), (b"mdat", 1000, 1000)])).is_ok());
        let mut text = tempfile::NamedTempFile::new().expect("temp");
        text.write_all(b"RIFF....WAVEfmt ").expect("write");
        assert!(check(&text).is_ok());
    }

    #[test]
    fn a_file_that_ends_inside_a_box_is_truncated() {
        let cut = mp4_boxes(&[(b"ftyp", 24, 24), (b"moov", 100, 100), (b"mdat", 1000, 500)]);
        let err = check(&cut).expect_err("truncated").to_string();
        assert_eq!(
            err,
            "truncated MP4 (brand `isom`): box `mdat` at byte 124 declares 1000 bytes, but the file ends 500 bytes into it"
        );
    }

    #[test]
    fn a_64_bit_size_past_the_end_is_truncated_not_an_overflow() {
        // Found by fuzzing (fuzz/corpus/mp4_boxes/largesize-*): `pos + size` overflowed.
        let ftyp = [&24u32.to_be_bytes()[..], b"ftypisom", &[0; 12]].concat();
        let check = |bytes: &[u8]| check_iso_bmff(&mut std::io::Cursor::new(bytes), bytes.len() as u64);
        let huge = [&ftyp[..], &1u32.to_be_bytes(), b"mdat", &(u64::MAX - 8).to_be_bytes()].concat();
        let err = check(&huge).expect_err("huge").to_string();
        assert_eq!(
            err,
            "truncated MP4 (brand `isom`): box `mdat` at byte 24 declares 18446744073709551607 bytes, but the file ends 16 bytes into it"
        );
        let cut = [&ftyp[..], &1u32.to_be_bytes(), b"mdat", &[0; 4]].concat();
        let err = check(&cut).expect_err("cut").to_string();
        assert_eq!(
            err,
            "truncated MP4 (brand `isom`): box `mdat` at byte 24 has a 64-bit size, but the file ends 12 bytes into it"
        );
    }

    #[test]
    fn a_file_without_its_index_is_truncated() {
        let cut = mp4_boxes(&[(b"ftyp", 24, 24), (b"mdat", 1000, 1000)]);
        let err = check(&cut).expect_err("no moov").to_string();
        assert_eq!(err, "truncated MP4 (brand `isom`): no `moov` box (the index) in its 1024 bytes");
    }
}
