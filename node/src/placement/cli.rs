//! `shoal pin`, `shoal unpin`, `shoal pins` and `shoal warm`: the placement endpoints of a
//! node, called over its registry API.

use reqwest::Method;
use serde_json::Value;
use shoal_protocol::Reference;

use crate::archive::{ImageRef, NodeClient};
use crate::cli::{NodeArgs, NodeImageArgs, PinArgs, PinsArgs, WarmArgs};

pub fn pin(args: &PinArgs) -> Result<(), String> {
    let image = ImageRef::parse(&args.image).map_err(|e| e.to_string())?;
    let mut query = query(&args.platform, args.replicas, false, args.with_referrers);
    query = if query.is_empty() { query } else { format!("?{query}") };
    let path = format!("/_shoal/pins/{}{query}", manifest_path(&image));
    let report = call(&args.node, Method::PUT, &path)?;
    println!("pinned {image} ({})", report["digest"].as_str().unwrap_or("?"));
    print_members(&report);
    Ok(())
}

pub fn unpin(args: &NodeImageArgs) -> Result<(), String> {
    let image = ImageRef::parse(&args.image).map_err(|e| e.to_string())?;
    call(&args.node, Method::DELETE, &format!("/_shoal/pins/{}", manifest_path(&image)))?;
    println!("unpinned {image} on every member");
    Ok(())
}

pub fn pins(args: &PinsArgs) -> Result<(), String> {
    let list = call(&args.node, Method::GET, crate::registry::PINS_PATH)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let rows = list.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no image is pinned on this node");
        return Ok(());
    }
    println!("{:<60} {:>8} {:>10}  DIGEST", "IMAGE", "REPLICAS", "WHOLE HERE");
    for row in rows {
        let digest = row["digest"].as_str().unwrap_or("");
        let image = row["image"].as_str().unwrap_or("").split('@').next().unwrap_or("");
        let whole = if row["whole_here"].as_bool() == Some(true) { "yes" } else { "fetching" };
        println!("{image:<60} {:>8} {whole:>10}  {digest}", row["replicas"]);
    }
    Ok(())
}

pub fn warm(args: &WarmArgs) -> Result<(), String> {
    let images: Vec<ImageRef> = args
        .images
        .iter()
        .map(|i| ImageRef::parse(i))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let query = query(&args.platform, args.replicas, args.all_nodes, args.with_referrers);
    for image in images {
        let query = if query.is_empty() { String::new() } else { format!("?{query}") };
        let path = format!("/_shoal/warm/{}{query}", manifest_path(&image));
        let report = call(&args.node, Method::POST, &path)?;
        println!("warmed {image} ({})", report["digest"].as_str().unwrap_or("?"));
        print_members(&report);
    }
    Ok(())
}

fn manifest_path(image: &ImageRef) -> String {
    let reference = match &image.reference {
        Reference::Tag(t) => t.as_str().to_owned(),
        Reference::Digest(d) => d.to_string(),
    };
    format!("{}/manifests/{reference}", image.node_name())
}

fn query(platform: &Option<String>, replicas: Option<u32>, all: bool, referrers: bool) -> String {
    let mut parts = Vec::new();
    if let Some(p) = platform {
        parts.push(format!("platform={p}"));
    }
    if let Some(n) = replicas {
        parts.push(format!("replicas={n}"));
    }
    if all {
        parts.push("all=true".to_owned());
    }
    if referrers {
        parts.push("referrers=true".to_owned());
    }
    parts.join("&")
}

fn print_members(report: &Value) {
    for (key, what) in
        [("whole", "hold it"), ("fetching", "are fetching it"), ("failed", "did not answer")]
    {
        let members: Vec<&str> = report[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !members.is_empty() {
            println!("  {} member(s) {what}: {}", members.len(), members.join(", "));
        }
    }
}

fn call(node: &NodeArgs, method: Method, path: &str) -> Result<Value, String> {
    let client = NodeClient::new(&node.node, node.user.as_deref(), node.node_ca.as_deref())
        .map_err(|e| e.to_string())?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(client.call(method, path))
        .map_err(|e| e.to_string())
}
