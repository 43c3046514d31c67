//! Number formatting shared by messages and reports: digit grouping (`604,035`), byte sizes
//! (`2.30 MiB`), shapes, and parsing of byte sizes given by users (`2GiB`, `512M`, `1000000`).

pub use cnn_graph::formula::group_digits;

/// A byte count in binary units with three significant digits: `2.30 MiB`, `3.64 TiB`, `812 B`.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// Parses a byte size: a plain integer, or an integer with a unit `K`, `M`, `G`, `T` (powers of
/// 1024; `KiB`, `KB` and lower case accepted too).
pub fn parse_bytes(text: &str) -> Result<u128, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a byte size (examples: 2000000000, 512MiB, 2G)"
        ));
    }
    let n: u128 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a byte size"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use K, M, G or T)"
            ))
        }
    };
    n.checked_mul(1u128 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `[32, 26, 26]` -> `"32x26x26"`.
pub fn shape_text(shape: &[usize]) -> String {
    cnn_tensor::format_shape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(490), "490");
        assert_eq!(group_digits(604_035), "604,035");
        assert_eq!(group_digits(1_000_000_000_000), "1,000,000,000,000");
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(2048), "2.00 KiB");
        assert_eq!(human_bytes(4_000_000_000_000), "3.64 TiB");
    }

    #[test]
    fn parse_sizes() {
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3X").is_err());
    }
}
