//! The placement endpoints `shoal pin`, `shoal unpin`, `shoal pins` and `shoal warm` call:
//! list, pin and unpin the images the fleet keeps, and warm images ahead of a rollout.
//!
//! `GET /_shoal/pins` lists; `PUT` and `DELETE /_shoal/pins/<name>/manifests/<reference>` pin
//! and unpin (`platform`, `replicas` and `referrers=true` in the query); `POST /_shoal/warm/
//! <name>/manifests/<reference>` warms (`platform`, `replicas` or `all=true`, `referrers=true`).
//! Answers are JSON.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::error::ApiError;
use super::handlers::json_response;
use super::route::Endpoint;
use crate::placement::{Copies, Placement};

pub(super) async fn serve(
    placement: &std::sync::Arc<Placement>,
    method: &Method,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    match (method.clone(), endpoint) {
        (Method::GET | Method::HEAD, Endpoint::Pins) => {
            Ok(json(&placement.list().await?, *method == Method::HEAD))
        }
        (Method::PUT, Endpoint::Pin { target, reference, platform, replicas, with_referrers }) => {
            let report =
                placement.pin(&target, &reference, platform, replicas, with_referrers).await?;
            Ok(json(&report, false))
        }
        (Method::DELETE, Endpoint::Pin { target, reference, .. }) => {
            if placement.unpin(&target, &reference, false).await? {
                Ok(json(&serde_json::json!({ "unpinned": reference.to_string() }), false))
            } else {
                Err(ApiError::Placement(crate::placement::PlacementError::NotPinned(
                    reference.to_string(),
                )))
            }
        }
        (
            Method::POST,
            Endpoint::Warm { target, reference, platform, replicas, all, with_referrers },
        ) => {
            let copies = match (all, replicas) {
                (true, _) => Copies::AllMembers,
                (false, n) => Copies::Replicas(n.unwrap_or(placement.default_replicas())),
            };
            let report =
                placement.warm(&target, &reference, platform, copies, with_referrers).await?;
            Ok(json(&report, false))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn json<T: Serialize>(value: &T, head: bool) -> Response {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    let len = body.len() as u64;
    json_response(StatusCode::OK, Body::from(body), len, head)
}
