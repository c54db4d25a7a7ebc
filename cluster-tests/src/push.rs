//! A small client of the distribution API for seeding registries: authentication (basic and
//! the bearer-token dance), blob uploads (monolithic, chunked, streamed) and manifest PUTs.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use shoal_protocol::Digest;

use crate::{HarnessError, Result};

/// A user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self { username: username.into(), password: password.into() }
    }

    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }

    /// The `USER:PASSWORD` form that skopeo's `--src-creds` takes.
    pub fn colon_pair(&self) -> String {
        format!("{}:{}", self.username, self.password)
    }
}

/// A client of one registry, e.g. `http://127.0.0.1:PORT`.
#[derive(Debug)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    /// `Authorization` value per repository; `None` when the registry wants none.
    authorizations: Mutex<HashMap<String, Option<String>>>,
}

impl RegistryClient {
    pub fn new(base: impl Into<String>, credentials: Option<Credentials>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            credentials,
            authorizations: Mutex::new(HashMap::new()),
        }
    }

    /// Sends its requests with `http` (one that trusts a test CA, say).
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// `http://HOST:PORT` of the registry.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Uploads `data` unless the registry has it; `chunk` > 0 uploads it in PATCHes of that size.
    pub async fn push_blob(&self, repo: &str, data: Bytes, chunk: usize) -> Result<Digest> {
        let digest = Digest::of(&data);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        self.upload_blob(repo, data, chunk, digest).await
    }

    /// Uploads `data`, whose digest the caller knows, whether or not the registry has it: in
    /// one `PUT` (`chunk` 0) or in `PATCH`es of `chunk` bytes then a `PUT`.
    pub async fn upload_blob(
        &self,
        repo: &str,
        data: Bytes,
        chunk: usize,
        digest: Digest,
    ) -> Result<Digest> {
        let mut location = self.start_upload(repo).await?;
        let last = if chunk == 0 {
            data
        } else {
            let mut offset = 0;
            while offset < data.len() {
                let end = (offset + chunk).min(data.len());
                let range = format!("{offset}-{}", end - 1);
                let request = self
                    .request(repo, Method::PATCH, location.clone())
                    .await?
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, range)
                    .body(data.slice(offset..end));
                location = self.next_location(request, StatusCode::ACCEPTED).await?;
                offset = end;
            }
            Bytes::new()
        };
        self.finish_upload(repo, location, &digest, reqwest::Body::from(last)).await?;
        Ok(digest)
    }

    /// Uploads a blob whose bytes come from `body` (one streamed PATCH, chunked transfer
    /// encoding); the caller computes `digest` as the bytes stream.
    pub async fn push_blob_stream(
        &self,
        repo: &str,
        body: reqwest::Body,
        digest: impl FnOnce() -> Digest,
    ) -> Result<Digest> {
        let location = self.start_upload(repo).await?;
        let request = self
            .request(repo, Method::PATCH, location)
            .await?
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let location = self.next_location(request, StatusCode::ACCEPTED).await?;
        let digest = digest();
        self.finish_upload(repo, location, &digest, reqwest::Body::from(Bytes::new())).await?;
        Ok(digest)
    }

    /// PUTs a manifest under `reference` (a tag or a digest) and returns its digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Digest> {
        let digest = Digest::of(&bytes);
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let request = self
            .request(repo, Method::PUT, url)
            .await?
            .header(CONTENT_TYPE, media_type)
            .body(bytes);
        self.expect(request, StatusCode::CREATED).await?;
        Ok(digest)
    }

    /// GETs a manifest, accepting every manifest type; returns its media type and bytes.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<(String, Bytes)> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let accept = shoal_protocol::media_type::MANIFEST_ACCEPT.join(", ");
        let request =
            self.request(repo, Method::GET, url).await?.header(reqwest::header::ACCEPT, accept);
        let response = self.expect(request, StatusCode::OK).await?;
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.bytes().await.map_err(|e| HarnessError::http("manifest body", e))?;
        Ok((media_type, body))
    }

    /// GETs a whole blob.
    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Bytes> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let request = self.request(repo, Method::GET, url).await?;
        let response = self.expect(request, StatusCode::OK).await?;
        response.bytes().await.map_err(|e| HarnessError::http("blob body", e))
    }

    async fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let request = self.request(repo, Method::HEAD, url).await?;
        let response = request.send().await.map_err(|e| HarnessError::http("blob HEAD", e))?;
        Ok(response.status() == StatusCode::OK)
    }

    async fn start_upload(&self, repo: &str) -> Result<Url> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let request = self.request(repo, Method::POST, url).await?.header(CONTENT_LENGTH, "0");
        self.next_location(request, StatusCode::ACCEPTED).await
    }

    async fn finish_upload(
        &self,
        repo: &str,
        mut location: Url,
        digest: &Digest,
        body: reqwest::Body,
    ) -> Result<()> {
        location.query_pairs_mut().append_pair("digest", &digest.to_string());
        let request = self
            .request(repo, Method::PUT, location)
            .await?
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.expect(request, StatusCode::CREATED).await.map(drop)
    }

    async fn next_location(
        &self,
        request: reqwest::RequestBuilder,
        status: StatusCode,
    ) -> Result<Url> {
        let response = self.expect(request, status).await?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // Distribution answers with an absolute URL; a relative one is joined to the base.
        let base = self.url("/")?;
        base.join(&location).map_err(|_| HarnessError::UploadLocation { location })
    }

    async fn expect(
        &self,
        request: reqwest::RequestBuilder,
        status: StatusCode,
    ) -> Result<reqwest::Response> {
        let request = request.build().map_err(|e| HarnessError::http(&self.base, e))?;
        let method = request.method().to_string();
        let response =
            self.http.execute(request).await.map_err(|e| HarnessError::http(&self.base, e))?;
        if response.status() == status {
            return Ok(response);
        }
        let url = response.url().to_string();
        let got = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Err(HarnessError::Status { method, url, status: got, body })
    }

    fn url(&self, path: &str) -> Result<Url> {
        let text = format!("{}{path}", self.base);
        Url::parse(&text).map_err(|_| HarnessError::UploadLocation { location: text })
    }

    async fn request(
        &self,
        repo: &str,
        method: Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder> {
        let builder = self.http.request(method, url);
        Ok(match self.authorization(repo).await? {
            Some(value) => builder.header(AUTHORIZATION, value),
            None => builder,
        })
    }

    /// The `Authorization` value for pushing to and pulling from `repo`, found once per repo
    /// from the challenge of `GET /v2/`.
    async fn authorization(&self, repo: &str) -> Result<Option<String>> {
        if let Some(known) = self.lock().get(repo) {
            return Ok(known.clone());
        }
        let url = format!("{}/v2/", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| HarnessError::http(&url, e))?;
        let value = if response.status() == StatusCode::UNAUTHORIZED {
            let header = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Some(self.answer_challenge(&url, header, repo).await?)
        } else {
            None
        };
        self.lock().insert(repo.to_owned(), value.clone());
        Ok(value)
    }

    async fn answer_challenge(
        &self,
        url: &str,
        header: Option<String>,
        repo: &str,
    ) -> Result<String> {
        let bad = || HarnessError::Challenge { url: url.to_owned(), header: header.clone() };
        let text = header.as_deref().ok_or_else(bad)?;
        let (scheme, params) = text.split_once(' ').ok_or_else(bad)?;
        if scheme.eq_ignore_ascii_case("basic") {
            return self.credentials.as_ref().map(Credentials::basic_header).ok_or_else(bad);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(bad());
        }
        let params = crate::token_server::parse_challenge_params(params);
        let realm = params.get("realm").ok_or_else(bad)?;
        let mut token_url = Url::parse(realm).map_err(|_| bad())?;
        if let Some(service) = params.get("service") {
            token_url.query_pairs_mut().append_pair("service", service);
        }
        token_url.query_pairs_mut().append_pair("scope", &format!("repository:{repo}:pull,push"));
        let mut request = self.http.get(token_url);
        if let Some(credentials) = &self.credentials {
            request = request.header(AUTHORIZATION, credentials.basic_header());
        }
        let response = self.expect(request, StatusCode::OK).await?;
        let body: serde_json::Value =
            response.json().await.map_err(|e| HarnessError::http("token response", e))?;
        let token = body.get("token").or_else(|| body.get("access_token"));
        let token = token.and_then(|t| t.as_str()).ok_or_else(bad)?;
        Ok(format!("Bearer {token}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        // A panic elsewhere cannot leave the map half-written, so a poisoned lock is usable.
        self.authorizations.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
