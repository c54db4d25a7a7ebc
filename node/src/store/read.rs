//! Positional reads of blob files, the one way the node reads a blob's bytes to send them.
//!
//! The buffer is not zeroed before the kernel fills it: on a hot GET, zeroing every chunk
//! first was 8 % of the node's samples in `perf record` (a `memset` as large as the read).
//! `rustix`'s `spare_capacity` lets `pread` fill a `Vec`'s spare capacity without unsafe code.

use std::fs::File;
use std::io;

use bytes::Bytes;
use rustix::buffer::spare_capacity;
use rustix::io::{Errno, pread};

/// Reads `len` bytes of `file` at `pos`; fewer only where the file ends first. Positional, so
/// readers sharing one handle never disturb each other.
pub fn read_at(file: &File, pos: u64, len: usize) -> io::Result<Bytes> {
    read_vec_at(file, pos, len).map(Bytes::from)
}

/// Fills `buf` from `file` at `pos`; returns how many bytes, fewer only where the file ends.
/// For buffers that are reused, so already initialized.
pub fn read_into(file: &File, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match pread(file, &mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

fn read_vec_at(file: &File, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let offset = pos + buf.len() as u64;
        match pread(file, spare_capacity(&mut buf), offset) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // `with_capacity` may round up, and a read may fill all of it.
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut temp = tempfile::NamedTempFile::new().unwrap();
        temp.write_all(bytes).unwrap();
        let file = File::open(temp.path()).unwrap();
        (temp, file)
    }

    #[test]
    fn reads_a_range_and_stops_where_the_file_ends() {
        let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_temp, file) = file_of(&bytes);
        assert_eq!(&read_at(&file, 1000, 5000).unwrap()[..], &bytes[1000..6000]);
        assert_eq!(&read_at(&file, 69_000, 5000).unwrap()[..], &bytes[69_000..]);
        assert!(read_at(&file, 70_000, 10).unwrap().is_empty());
        assert_eq!(read_at(&file, 0, 70_000).unwrap(), bytes);

        let mut buf = vec![0u8; 5000];
        assert_eq!(read_into(&file, 1000, &mut buf).unwrap(), 5000);
        assert_eq!(buf, &bytes[1000..6000]);
        assert_eq!(read_into(&file, 69_000, &mut buf).unwrap(), 1000);
        assert_eq!(&buf[..1000], &bytes[69_000..]);
    }
}
