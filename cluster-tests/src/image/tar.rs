//! A minimal ustar writer for generated layers: regular files only, fixed metadata, so the
//! same files always give the same bytes.

/// Size of a tar block.
const BLOCK: usize = 512;

/// Builds a tar archive of `(path, content)` entries. Paths must be shorter than 100 bytes.
pub(crate) fn archive(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, content) in entries {
        out.extend_from_slice(&header(path, content.len()));
        out.extend_from_slice(content);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    // Two zero blocks end the archive.
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

fn header(path: &str, size: usize) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let name = path.as_bytes();
    let name_len = name.len().min(99);
    h[..name_len].copy_from_slice(&name[..name_len]);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size as u64);
    octal(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field read as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// Writes `value` as zero-padded octal with a trailing NUL, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let text = text.as_bytes();
    field[..width].copy_from_slice(&text[text.len() - width..]);
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_layout_and_checksum() {
        let tar = archive(&[("a/b.txt".to_owned(), b"hello".to_vec())]);
        assert_eq!(tar.len(), 4 * BLOCK);
        assert_eq!(&tar[..7], b"a/b.txt");
        assert_eq!(&tar[124..136], b"00000000005\0");
        assert_eq!(&tar[BLOCK..BLOCK + 5], b"hello");
        assert!(tar[BLOCK + 5..].iter().all(|&b| b == 0));
        let stored = std::str::from_utf8(&tar[148..154]).expect("ascii");
        let mut header = tar[..BLOCK].to_vec();
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).expect("octal"), sum);
    }
}
