//! Sizes as people read them, the same in the terminal and in the panel.

/// Bytes in the largest binary unit that keeps the number readable, with one decimal
/// (a limit such as `--max-store 195.3 KiB` reads exactly enough): `17 B`, `1.5 MiB`,
/// `768.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn sizes_read_in_the_largest_unit_that_fits() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(8 << 20), "8.0 MiB");
        assert_eq!(human_size(200_000), "195.3 KiB");
        assert_eq!(human_size(768 << 20), "768.0 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
        assert_eq!(human_size(5 << 50), "5120.0 TiB");
    }
}
