//! Making credentials for the files: what `shoal auth htpasswd` and `shoal auth token` do.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use rand::Rng;

use super::{Htpasswd, Tokens};

/// The htpasswd line of `user` with `password`, in the `$2y$` spelling Apache's tool writes.
pub fn htpasswd_line(user: &str, password: &str, cost: u32) -> Result<String, String> {
    super::check_name(user)?;
    let parts = bcrypt::hash_with_result(password, cost).map_err(|e| e.to_string())?;
    let line = format!("{user}:{}", parts.format_for_version(bcrypt::Version::TwoY));
    // What the node will read back, checked before anyone relies on it.
    Htpasswd::parse(&line).map_err(|(_, detail)| detail)?;
    Ok(line)
}

/// Makes a random token for `name`, appends its line to the tokens file at `path`, and
/// returns the token. Refuses a name the file already has.
pub fn add_token(path: &Path, name: &str) -> Result<String, String> {
    super::check_name(name)?;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let tokens = Tokens::parse(&existing)
        .map_err(|(line, detail)| format!("{}, line {line}: {detail}", path.display()))?;
    if tokens.names().any(|n| n == name) {
        return Err(format!("{} already has a token for {name:?}", path.display()));
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = format!("shoal_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    let mut line = super::token_file_line(name, &token);
    line.push('\n');
    if !existing.is_empty() && !existing.ends_with('\n') {
        line.insert(0, '\n');
    }
    let mut file =
        open_private(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(line.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(token)
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_htpasswd_line_verifies_and_reads_back() {
        let line = htpasswd_line("alice", "s3cret", 4).unwrap();
        assert!(line.starts_with("alice:$2y$04$"), "{line}");
        let file = Htpasswd::parse(&line).unwrap();
        assert!(bcrypt::verify("s3cret", file.hash_of("alice").unwrap()).unwrap());
        assert!(htpasswd_line("bad name", "x", 4).is_err());
    }

    #[test]
    fn tokens_are_appended_once_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let ci = add_token(&path, "ci").unwrap();
        let deploy = add_token(&path, "deploy").unwrap();
        assert_ne!(ci, deploy);
        assert!(add_token(&path, "ci").unwrap_err().contains("already"));
        let tokens = Tokens::load(&path).unwrap();
        assert_eq!(tokens.find(&ci), Some("ci"));
        assert_eq!(tokens.find(&deploy), Some("deploy"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&ci), "only the hash is stored");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
