//! The OCI image layout inside a tar: writing one entry at a time on a blocking thread fed by a
//! bounded channel (so a blob streams from the network into the archive in constant memory),
//! and reading one by random access (a map of entry name → position, built in one pass).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use shoal_protocol::Digest;
use tokio::sync::{mpsc, oneshot};

use super::ArchiveError;

/// Chunks in flight between the network and the archive per blob.
const CHUNKS_IN_FLIGHT: usize = 16;

pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

enum Command {
    /// An entry of `size` bytes whose chunks follow on the channel; an `Err` chunk aborts.
    Entry {
        path: String,
        size: u64,
        chunks: mpsc::Receiver<io::Result<Bytes>>,
    },
    Finish(oneshot::Sender<io::Result<()>>),
}

/// Writes an archive on a blocking thread. Dropped without [`ArchiveWriter::finish`], the
/// partial file is removed.
pub struct ArchiveWriter {
    commands: mpsc::Sender<Command>,
    result: Option<oneshot::Receiver<io::Result<()>>>,
    path: PathBuf,
    done: bool,
}

impl ArchiveWriter {
    pub fn create(path: &Path) -> Result<ArchiveWriter, ArchiveError> {
        let file = File::create(path).map_err(|e| ArchiveError::io("create", path, e))?;
        let (commands, mut rx) = mpsc::channel::<Command>(1);
        let (failed_tx, failed_rx) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut builder = tar::Builder::new(io::BufWriter::new(file));
            let mut failed_tx = Some(failed_tx);
            while let Some(command) = rx.blocking_recv() {
                match command {
                    Command::Entry { path, size, chunks } => {
                        let mut header = tar::Header::new_ustar();
                        header.set_size(size);
                        header.set_mode(0o644);
                        header.set_mtime(0);
                        let reader = ChannelReader { chunks, current: Bytes::new() };
                        if let Err(e) = builder.append_data(&mut header, &path, reader)
                            && let Some(tx) = failed_tx.take()
                        {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                    Command::Finish(done) => {
                        let result = builder
                            .into_inner()
                            .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
                            .and_then(|file| file.sync_all());
                        let _ = done.send(result);
                        return;
                    }
                }
            }
        });
        Ok(ArchiveWriter { commands, result: Some(failed_rx), path: path.to_owned(), done: false })
    }

    /// Starts an entry of `size` bytes; send its chunks (exactly `size` bytes in all) on the
    /// returned sender, an `Err` to abort the archive.
    pub async fn entry(
        &mut self,
        path: String,
        size: u64,
    ) -> Result<mpsc::Sender<io::Result<Bytes>>, ArchiveError> {
        let (tx, chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
        if self.commands.send(Command::Entry { path, size, chunks }).await.is_err() {
            return Err(self.failure().await);
        }
        Ok(tx)
    }

    /// A whole small entry.
    pub async fn small(&mut self, path: String, bytes: Bytes) -> Result<(), ArchiveError> {
        let tx = self.entry(path, bytes.len() as u64).await?;
        if tx.send(Ok(bytes)).await.is_err() {
            return Err(self.failure().await);
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), ArchiveError> {
        let (done, result) = oneshot::channel();
        if self.commands.send(Command::Finish(done)).await.is_err() {
            return Err(self.failure().await);
        }
        let Ok(written) = result.await else { return Err(self.failure().await) };
        written.map_err(|e| ArchiveError::io("write", &self.path, e))?;
        self.done = true;
        Ok(())
    }

    /// Why the writer stopped taking data (a full disk, say): call once a send to it failed.
    /// The writer drops what it was reading before it reports, so this waits for the report.
    pub async fn failure(&mut self) -> ArchiveError {
        let reported = match self.result.take() {
            Some(rx) => tokio::time::timeout(std::time::Duration::from_secs(10), rx).await.ok(),
            None => None,
        };
        let detail = reported
            .and_then(Result::ok)
            .and_then(Result::err)
            .unwrap_or_else(|| io::Error::other("the archive writer stopped"));
        ArchiveError::io("write", &self.path, detail)
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The chunks of one entry, as the `Read` the tar builder wants.
struct ChannelReader {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// An archive opened for reading: where each entry's bytes are.
pub struct ArchiveReader {
    pub path: PathBuf,
    entries: HashMap<String, (u64, u64)>,
}

impl ArchiveReader {
    /// Reads the tar's headers (not its data) once. Blocking.
    pub fn open(path: &Path) -> Result<ArchiveReader, ArchiveError> {
        let not_layout = |detail: String| ArchiveError::NotLayout {
            archive: path.display().to_string(),
            detail,
        };
        let file = File::open(path).map_err(|e| ArchiveError::io("open", path, e))?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        for entry in archive.entries_with_seek().map_err(|e| not_layout(e.to_string()))? {
            let entry = entry.map_err(|e| not_layout(e.to_string()))?;
            let name = entry.path().map_err(|e| not_layout(e.to_string()))?;
            let name = name.to_string_lossy().trim_start_matches("./").to_owned();
            entries.insert(name, (entry.raw_file_position(), entry.size()));
        }
        if !entries.contains_key("index.json") {
            return Err(not_layout("it has no index.json".to_owned()));
        }
        Ok(ArchiveReader { path: path.to_owned(), entries })
    }

    /// Size of the entry `name`, if present.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.entries.get(name).map(|(_, size)| *size)
    }

    /// A reader of the entry `name`'s bytes.
    pub fn open_entry(&self, name: &str) -> Result<Option<io::Take<File>>, ArchiveError> {
        let Some(&(offset, size)) = self.entries.get(name) else { return Ok(None) };
        let mut file =
            File::open(&self.path).map_err(|e| ArchiveError::io("open", &self.path, e))?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| ArchiveError::io("seek", &self.path, e))?;
        Ok(Some(file.take(size)))
    }

    /// A whole small entry (at most `max` bytes).
    pub fn read_small(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        if self.size(name).is_some_and(|size| size > max) {
            return Err(ArchiveError::NotLayout {
                archive: self.path.display().to_string(),
                detail: format!("{name} is larger than {max} bytes"),
            });
        }
        let Some(mut reader) = self.open_entry(name)? else { return Ok(None) };
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| ArchiveError::io("read", &self.path, e))?;
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk while a blob streams in is reported as the archive's failure, naming the
    /// cause, not as a blob that does not match its digest.
    #[tokio::test]
    async fn a_full_disk_is_the_archives_failure() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let mut archive = ArchiveWriter::create(full).expect("open /dev/full");
        let tx = archive.entry("blobs/sha256/x".to_owned(), 64 << 20).await.expect("entry");
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        let mut refused = false;
        for _ in 0..64 {
            if tx.send(Ok(chunk.clone())).await.is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a writer on a full disk kept taking chunks");
        let error = archive.failure().await.to_string();
        assert!(error.contains("/dev/full") && error.contains("No space left"), "{error}");
    }
}
