//! Generated test images pushed through the registry API: deterministic content from a seed,
//! real gzip-compressed tar layers, OCI and Docker schema2 manifests, a multi-arch OCI index,
//! and images with one large random layer streamed from a generator.

mod pushed;
mod random;
mod referrer;
mod tar;

use std::io::Write as _;

use bytes::Bytes;
use serde_json::json;
use shoal_protocol::Digest;
use shoal_protocol::media_type::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

pub use pushed::{BlobInfo, ManifestInfo, PushedImage};
pub use random::{StreamDigest, stream as random_stream};
pub use referrer::{push_referrer, push_referrers_tag};

use crate::{HarnessError, RegistryClient, Result};

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Manifest format of a generated image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    Oci,
    DockerSchema2,
}

/// What image to generate and how to upload it.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub seed: u64,
    pub format: ManifestFormat,
    pub layers: usize,
    /// Random bytes per layer, before tar and gzip.
    pub layer_size: usize,
    /// 0 uploads each blob in one PUT; otherwise in PATCHes of this many bytes.
    pub chunk_size: usize,
    pub architecture: String,
}

impl ImageSpec {
    /// An OCI image with 3 layers and a config.
    pub fn oci(seed: u64) -> Self {
        Self {
            seed,
            format: ManifestFormat::Oci,
            layers: 3,
            layer_size: 48 * 1024,
            chunk_size: 0,
            architecture: "amd64".to_owned(),
        }
    }

    /// A Docker schema2 image with 3 layers and a config.
    pub fn docker(seed: u64) -> Self {
        Self { format: ManifestFormat::DockerSchema2, ..Self::oci(seed) }
    }

    /// Uploads blobs in PATCHes of `chunk_size` bytes.
    pub fn chunked(self, chunk_size: usize) -> Self {
        Self { chunk_size, ..self }
    }
}

/// Generates the image of `spec` and pushes it as `repo:tag`.
pub async fn push_image(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    spec: &ImageSpec,
) -> Result<PushedImage> {
    let root = push_image_manifest(client, repo, tag, spec).await?;
    Ok(PushedImage { repo: repo.to_owned(), tag: tag.to_owned(), root, children: Vec::new() })
}

/// Pushes an OCI index tagged `repo:tag` over two OCI images, linux/amd64 and linux/arm64.
pub async fn push_multi_arch(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    seed: u64,
) -> Result<PushedImage> {
    let mut children = Vec::new();
    for (i, arch) in ["amd64", "arm64"].into_iter().enumerate() {
        let spec =
            ImageSpec { architecture: arch.to_owned(), ..ImageSpec::oci(seed * 1000 + i as u64) };
        // Children are pushed by digest: an index may only reference manifests that exist.
        let mut child = build_image(client, repo, &spec).await?;
        client
            .put_manifest(repo, &child.digest.to_string(), &child.media_type, child.bytes.clone())
            .await?;
        child.platform = Some(("linux".to_owned(), arch.to_owned()));
        children.push(child);
    }
    let entries: Vec<_> = children
        .iter()
        .map(|c| {
            let (os, arch) = c.platform.clone().unwrap_or_default();
            json!({
                "mediaType": c.media_type, "digest": c.digest.to_string(), "size": c.bytes.len(),
                "platform": {"os": os, "architecture": arch},
            })
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    let bytes = to_json(&index)?;
    let digest = client.put_manifest(repo, tag, OCI_INDEX, bytes.clone()).await?;
    let root = ManifestInfo {
        digest,
        media_type: OCI_INDEX.to_owned(),
        bytes,
        platform: None,
        blobs: Vec::new(),
    };
    Ok(PushedImage { repo: repo.to_owned(), tag: tag.to_owned(), root, children })
}

/// Pushes an OCI image whose single layer is `size` random bytes (media type `...tar`, not a
/// real archive), streamed from a generator while hashing: memory stays constant.
pub async fn push_large_layer_image(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    size: u64,
    seed: u64,
) -> Result<PushedImage> {
    let (stream, digest) = random::stream(seed, size);
    let body = reqwest::Body::wrap_stream(stream);
    let layer_digest = client.push_blob_stream(repo, body, || digest.finish()).await?;
    let layer = BlobInfo { digest: layer_digest, size, media_type: OCI_LAYER_TAR.to_owned() };
    let config = config_json(seed, "amd64", &[layer_digest])?;
    let config = push_blob(client, repo, config, OCI_CONFIG, 0).await?;
    let root =
        put_image_manifest(client, repo, tag, ManifestFormat::Oci, config, vec![layer]).await?;
    Ok(PushedImage { repo: repo.to_owned(), tag: tag.to_owned(), root, children: Vec::new() })
}

async fn push_image_manifest(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    spec: &ImageSpec,
) -> Result<ManifestInfo> {
    let built = build_image(client, repo, spec).await?;
    client.put_manifest(repo, tag, &built.media_type, built.bytes.clone()).await?;
    Ok(built)
}

/// Uploads the blobs of `spec` and returns its manifest, not yet PUT.
async fn build_image(
    client: &RegistryClient,
    repo: &str,
    spec: &ImageSpec,
) -> Result<ManifestInfo> {
    let (layer_type, config_type) = match spec.format {
        ManifestFormat::Oci => (OCI_LAYER_GZIP, OCI_CONFIG),
        ManifestFormat::DockerSchema2 => (DOCKER_LAYER_GZIP, DOCKER_CONFIG),
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..spec.layers {
        let layer_seed = spec.seed.wrapping_mul(1 << 16).wrapping_add(i as u64);
        let files = vec![
            (
                format!("seed-{}/layer-{i}/data.bin", spec.seed),
                random::bytes(layer_seed, spec.layer_size),
            ),
            (
                format!("seed-{}/layer-{i}/README", spec.seed),
                format!("layer {i} of seed {}\n", spec.seed).into_bytes(),
            ),
        ];
        let tar = tar::archive(&files);
        diff_ids.push(Digest::of(&tar));
        let gz = gzip(&tar)?;
        layers.push(push_blob(client, repo, gz, layer_type, spec.chunk_size).await?);
    }
    let config = config_json(spec.seed, &spec.architecture, &diff_ids)?;
    let config = push_blob(client, repo, config, config_type, spec.chunk_size).await?;
    manifest_info(spec.format, config, layers)
}

async fn put_image_manifest(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    format: ManifestFormat,
    config: BlobInfo,
    layers: Vec<BlobInfo>,
) -> Result<ManifestInfo> {
    let info = manifest_info(format, config, layers)?;
    client.put_manifest(repo, tag, &info.media_type, info.bytes.clone()).await?;
    Ok(info)
}

fn manifest_info(
    format: ManifestFormat,
    config: BlobInfo,
    layers: Vec<BlobInfo>,
) -> Result<ManifestInfo> {
    let media_type = match format {
        ManifestFormat::Oci => OCI_MANIFEST,
        ManifestFormat::DockerSchema2 => DOCKER_MANIFEST,
    };
    let descriptor = |b: &BlobInfo| json!({"mediaType": b.media_type, "digest": b.digest.to_string(), "size": b.size});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(&config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    let bytes = to_json(&manifest)?;
    let mut blobs = vec![config];
    blobs.extend(layers);
    Ok(ManifestInfo {
        digest: Digest::of(&bytes),
        media_type: media_type.to_owned(),
        bytes,
        platform: None,
        blobs,
    })
}

async fn push_blob(
    client: &RegistryClient,
    repo: &str,
    data: Vec<u8>,
    media_type: &str,
    chunk_size: usize,
) -> Result<BlobInfo> {
    let size = data.len() as u64;
    let digest = client.push_blob(repo, Bytes::from(data), chunk_size).await?;
    Ok(BlobInfo { digest, size, media_type: media_type.to_owned() })
}

fn config_json(seed: u64, architecture: &str, diff_ids: &[Digest]) -> Result<Vec<u8>> {
    let config = json!({
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": [format!("SHOAL_TEST_SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    });
    to_json(&config)
}

fn to_json(value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| HarnessError::json("a generated manifest", e))
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    // The gzip header carries no timestamp, so the same tar gives the same blob.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).map_err(|e| HarnessError::io("gzip of a layer", e))?;
    encoder.finish().map_err(|e| HarnessError::io("gzip of a layer", e))
}
