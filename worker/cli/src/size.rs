//! Byte sizes and durations as people write them: `512MiB`, `2G`, `1048576`; `30s`, `500ms`, `2m`.

/// Parses a byte size with an optional unit (`K`, `KB`, `KiB`, ... `T`; decimal units are powers
/// of 1000, binary ones of 1024).
///
/// # Errors
/// A message naming what could not be read.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a size (e.g. 512MiB, 2G, 1048576)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0f64.powi(4),
        other => {
            return Err(format!("`{text}`: unknown unit `{other}` (use K, M, G, T or Ki, Mi, Gi, Ti)"));
        }
    };
    Ok((value * scale) as u64)
}

/// Parses a duration: a number with `ms`, `s`, `m` or `h` (a bare number is seconds).
///
/// # Errors
/// A message naming what could not be read.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("`{text}`: unknown unit `{other}` (use ms, s, m or h)")),
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

pub use weir_core::budget::format_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_duration("500ms"), Ok(std::time::Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(std::time::Duration::from_secs(120)));
        assert!(parse_duration("3 days").unwrap_err().contains("unknown unit"));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").expect_err("unit").contains("unknown unit `parsecs`"));
        assert_eq!(format_size(3 << 20), "3.0 MiB");
    }
}
