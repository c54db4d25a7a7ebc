//! Blob uploads: monolithic (`POST ?digest=`), in one or more chunks (`POST`, `PATCH`...,
//! `PUT ?digest=`), resumable (`GET` says how far it got), cancelled (`DELETE`), and mounts.
//!
//! A request body streams into the upload's file in batches of at most [`BATCH`] bytes, so an
//! upload holds that much memory whatever the blob's size. A chunk must continue the upload
//! where it stands; a body that breaks off keeps what arrived, and `GET` tells the client
//! where to go on from.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use shoal_protocol::{AnyDigest, Digest, RepositoryName};

use super::{BodyStream, PushError, Pusher, Started, UploadState, blocking, upload_pin};
use crate::fetch::Target;
use crate::store::UploadFile;

/// Bytes gathered from the network before one write to the file.
const BATCH: usize = 1024 * 1024;

impl Pusher {
    /// `POST .../blobs/uploads/`: opens an upload, or, with `digest`, takes the whole blob
    /// from `body` at once.
    pub async fn start_upload(
        &self,
        target: &Target,
        digest: Option<AnyDigest>,
        body: BodyStream,
    ) -> Result<Started, PushError> {
        let mut file = self.store.begin_upload().await?;
        append(&mut file, body).await?;
        match digest {
            Some(digest) => {
                self.commit(target, file, &digest).await?;
                Ok(Started::Stored(digest))
            }
            None => {
                let written = file.written();
                let id = self.sessions.open(target.clone(), file)?;
                Ok(Started::Open(UploadState { id, written }))
            }
        }
    }

    /// `POST ...?mount=<digest>[&from=<repo>]`: makes a blob this node holds part of `target`
    /// without sending it again. Only from a repository it is known to be in (the caller
    /// checked the client may pull that one); without `from`, only on a node where every client
    /// may pull every name. A sha512 mounts the blob it is a checked alias of. `false`: not
    /// mounted, the client uploads it instead.
    pub async fn mount(
        &self,
        target: &Target,
        named: &AnyDigest,
        from: Option<&RepositoryName>,
    ) -> Result<bool, PushError> {
        let digest = match named {
            AnyDigest::Sha256(digest) => *digest,
            AnyDigest::Sha512(alias) => match self.fetcher.local_alias(alias).await? {
                Some(digest) => digest,
                None => return Ok(false),
            },
        };
        let digest = &digest;
        if !self.store.contains(digest) {
            return Ok(false);
        }
        let allowed = match from {
            Some(from) => self.store.seen_in(digest, &target.registry, from)?,
            None => !self.restricts_names,
        };
        if !allowed {
            return Ok(false);
        }
        self.keep(target, *digest).await?;
        Ok(true)
    }

    /// `PATCH .../blobs/uploads/<id>`: appends a chunk. `start` is where its `Content-Range`
    /// says it begins and `len` how long it says it is; a chunk that does not begin where the
    /// upload stands is refused before a byte is read.
    pub async fn patch(
        &self,
        target: &Target,
        id: &str,
        range: Option<(u64, u64)>,
        body: BodyStream,
    ) -> Result<UploadState, PushError> {
        let session = self.sessions.get(id, target)?;
        let mut session = session.lock().await;
        session.touch();
        let file = session.file(id)?;
        let have = file.written();
        if let Some((start, _)) = range
            && start != have
        {
            return Err(PushError::OutOfOrder { have, got: start });
        }
        let appended = append(file, body).await;
        let (written, intact) = (file.written(), file.is_intact());
        session.touch();
        if !intact {
            // A failed write may have left a hole: this upload cannot be finished.
            self.sessions.close(id);
        }
        let sent = appended?;
        if let Some((start, end)) = range
            && sent != end - start
        {
            return Err(PushError::SizeInvalid(format!(
                "Content-Range announced {} bytes but {sent} arrived; {written} bytes are now \
                 in the upload",
                end - start
            )));
        }
        Ok(UploadState { id: id.to_owned(), written })
    }

    /// `PUT .../blobs/uploads/<id>?digest=`: appends the last chunk (maybe empty), checks the
    /// digest and stores the blob. A last chunk whose `Content-Range` does not begin where the
    /// upload stands is refused before a byte is read, and the upload stays open for the
    /// client to ask where it stands; past that check the upload ends either way.
    pub async fn finish(
        &self,
        target: &Target,
        id: &str,
        digest: Option<AnyDigest>,
        range: Option<(u64, u64)>,
        body: BodyStream,
    ) -> Result<AnyDigest, PushError> {
        let session = self.sessions.get(id, target)?;
        let Some(digest) = digest else {
            return Err(PushError::DigestInvalid(
                "the closing PUT of an upload needs ?digest=sha256:...".to_owned(),
            ));
        };
        let mut file = {
            let mut session = session.lock().await;
            let have = session.file(id)?.written();
            if let Some((start, _)) = range
                && start != have
            {
                session.touch();
                return Err(PushError::OutOfOrder { have, got: start });
            }
            self.sessions.close(id);
            session.take(id)?
        };
        let sent = append(&mut file, body).await?;
        if let Some((start, end)) = range
            && sent != end - start
        {
            return Err(PushError::SizeInvalid(format!(
                "Content-Range announced {} bytes but {sent} arrived; the upload is abandoned",
                end - start
            )));
        }
        self.commit(target, file, &digest).await?;
        Ok(digest)
    }

    /// `GET .../blobs/uploads/<id>`: how far the upload got.
    pub async fn upload_state(&self, target: &Target, id: &str) -> Result<UploadState, PushError> {
        let session = self.sessions.get(id, target)?;
        let mut session = session.lock().await;
        session.touch();
        let written = session.file(id)?.written();
        Ok(UploadState { id: id.to_owned(), written })
    }

    /// `DELETE .../blobs/uploads/<id>`: ends the upload and removes what it received.
    pub async fn cancel(&self, target: &Target, id: &str) -> Result<(), PushError> {
        self.sessions.get(id, target)?;
        self.sessions.close(id);
        Ok(())
    }

    /// Stores the upload as the blob `named`. A sha512 is checked by reading the upload back
    /// (the bytes were hashed with sha256 on the way in); the blob is stored under its sha256
    /// and the sha512 recorded as its alias.
    async fn commit(
        &self,
        target: &Target,
        file: UploadFile,
        named: &AnyDigest,
    ) -> Result<(), PushError> {
        let (digest, alias) = match named {
            AnyDigest::Sha256(digest) => (*digest, None),
            AnyDigest::Sha512(alias) => {
                let (digest, actual) = file.both_digests().await?;
                if actual != *alias {
                    return Err(PushError::DigestInvalid(format!(
                        "the {} bytes uploaded hash to {actual}, not to {alias}",
                        file.written()
                    )));
                }
                (digest, Some(*alias))
            }
        };
        let digest = &digest;
        file.finish(digest, None).await.map_err(|e| match e {
            crate::store::StoreError::DigestMismatch(m) => PushError::DigestInvalid(format!(
                "the {} bytes uploaded hash to {}, not to {}",
                m.len, m.actual, m.expected
            )),
            other => other.into(),
        })?;
        if let Some(alias) = alias {
            self.fetcher.record_alias(&alias, digest).await?;
        }
        self.keep(target, *digest).await
    }

    /// Records a stored blob as part of `target`, pins it until a manifest names it, and
    /// tells the fleet this node holds it.
    async fn keep(&self, target: &Target, digest: Digest) -> Result<(), PushError> {
        let (store, target_c) = (self.store.clone(), target.clone());
        blocking("record pushed blob", move || {
            store.record_seen(&[digest], &target_c.registry, &target_c.repo)?;
            store.pin(&[digest], &upload_pin(&target_c))
        })
        .await?;
        self.fetcher.announce(&digest);
        Ok(())
    }
}

/// Streams `body` into `file`; returns the bytes it carried. What arrived before a broken body
/// stays in the upload.
async fn append(file: &mut UploadFile, mut body: BodyStream) -> Result<u64, PushError> {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let mut sent = 0u64;
    loop {
        let next = body.next().await;
        let (chunk, broken) = match next {
            Some(Ok(chunk)) => (Some(chunk), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let end = chunk.is_none();
        if let Some(chunk) = chunk {
            batched += chunk.len();
            sent += chunk.len() as u64;
            batch.push(chunk);
        }
        if (batched >= BATCH || end) && !batch.is_empty() {
            file.append(Arc::from(std::mem::take(&mut batch))).await?;
            batched = 0;
        }
        if let Some(e) = broken {
            return Err(PushError::Body(e));
        }
        if end {
            return Ok(sent);
        }
    }
}
