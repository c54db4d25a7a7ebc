//! `WWW-Authenticate` parsing (RFC 7235): the schemes a registry offers and their parameters.
//!
//! Registries put commas inside quoted values (`scope="repository:a:pull,push"`), repeat
//! `scope`, and may offer several challenges in one header, so a split on `,` is not enough.

/// One challenge: a scheme (lowercased) and its parameters (keys lowercased, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of a parameter that may repeat, such as `scope`.
    pub fn params_named<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge in a header value; garbage yields fewer challenges, never a panic.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut p = Parser { s: header.as_bytes(), i: 0 };
    let mut out = Vec::new();
    loop {
        p.skip(|b| b == b',' || is_space(b));
        if p.at_end() {
            return out;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            p.i += 1;
            continue;
        }
        let mut challenge = Challenge { scheme: scheme.to_ascii_lowercase(), params: Vec::new() };
        loop {
            p.skip(|b| b == b',' || is_space(b));
            let start = p.i;
            let key = p.token();
            p.skip(is_space);
            if key.is_empty() || p.peek() != Some(b'=') {
                // Not `key=`: the start of the next challenge (or a token68, which no
                // registry challenge uses).
                p.i = start;
                break;
            }
            p.i += 1;
            p.skip(is_space);
            let value = if p.peek() == Some(b'"') { p.quoted() } else { p.bare_value() };
            challenge.params.push((key.to_ascii_lowercase(), value));
        }
        out.push(challenge);
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, pred: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.i += 1;
        }
    }

    fn take(&mut self, pred: impl Fn(u8) -> bool) -> String {
        let start = self.i;
        self.skip(pred);
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn token(&mut self) -> String {
        self.take(is_tchar)
    }

    /// An unquoted value: registries send realms as bare URLs, which are not RFC tokens.
    fn bare_value(&mut self) -> String {
        self.take(|b| b != b',' && !is_space(b))
    }

    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut value = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.i += 1;
                    }
                }
                _ => value.push(b),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn commas_in_quotes_repeated_scopes_and_escapes() {
        let h = r#"bearer Realm = "http://a/t?x=1,2" , scope="repository:a:pull,push",scope="repository:b:pull", error="insufficient_scope", detail="say \"hi\"""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("realm"), Some("http://a/t?x=1,2"));
        let scopes: Vec<_> = c[0].params_named("scope").collect();
        assert_eq!(scopes, ["repository:a:pull,push", "repository:b:pull"]);
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert_eq!(c[0].param("detail"), Some("say \"hi\""));
    }

    #[test]
    fn several_challenges_and_bare_values() {
        let c = parse_challenges(
            r#"Basic realm="Registry Realm", Bearer realm=http://h:1/token,service=svc"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("http://h:1/token"));
        assert_eq!(c[1].param("service"), Some("svc"));
        assert_eq!(parse_challenges("Basic")[0].params, vec![]);
    }

    #[test]
    fn garbage_does_not_panic() {
        for h in
            ["", ",,,", "=", "\"", "Bearer realm=\"unterminated", "Bearer =x", "é ü=\"ß", "a=,=b"]
        {
            let _ = parse_challenges(h);
        }
        assert_eq!(
            parse_challenges("Bearer realm=\"unterminated")[0].param("realm"),
            Some("unterminated")
        );
    }
}
