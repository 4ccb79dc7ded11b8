//! Client-id patterns of connect rules: literal text and `*` (any run of
//! characters). Placeholder values are substituted as literal text, so a `*`
//! inside a username matches only a `*`.

/// A compiled client-id pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientIdPattern {
    /// Literal runs between stars, in order, none empty.
    lits: Vec<String>,
    has_star: bool,
    star_start: bool,
    star_end: bool,
    text: String,
}

/// One piece of a pattern being built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Pattern text, where `*` is a wildcard.
    Pattern(&'a str),
    /// A substituted value, matched literally.
    Literal(&'a str),
    /// A trailing wildcard, used when a deny rule is widened.
    Star,
}

impl ClientIdPattern {
    pub(crate) fn build(pieces: &[Piece<'_>]) -> ClientIdPattern {
        let mut p = ClientIdPattern {
            lits: Vec::new(),
            has_star: false,
            star_start: false,
            star_end: false,
            text: String::new(),
        };
        let mut current = String::new();
        for piece in pieces {
            match piece {
                Piece::Pattern(text) => {
                    let mut parts = text.split('*');
                    if let Some(head) = parts.next() {
                        current.push_str(head);
                    }
                    for part in parts {
                        p.star(&mut current);
                        current.push_str(part);
                    }
                }
                Piece::Literal(text) => current.push_str(text),
                Piece::Star => p.star(&mut current),
            }
        }
        if !current.is_empty() {
            p.lits.push(current);
            p.star_end = false;
        }
        p.text = p.render();
        p
    }

    fn star(&mut self, current: &mut String) {
        if !self.has_star && current.is_empty() && self.lits.is_empty() {
            self.star_start = true;
        }
        if !current.is_empty() {
            self.lits.push(std::mem::take(current));
        }
        self.has_star = true;
        self.star_end = true;
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if self.star_start {
            out.push('*');
        }
        for (i, lit) in self.lits.iter().enumerate() {
            if i > 0 {
                out.push('*');
            }
            out.push_str(lit);
        }
        if self.star_end && !(self.lits.is_empty() && self.star_start) {
            out.push('*');
        }
        out
    }

    /// The pattern as text, with substituted values in place (for explain).
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Does `client_id` match? Does not allocate.
    pub(crate) fn matches(&self, client_id: &str) -> bool {
        if !self.has_star {
            return self
                .lits
                .first()
                .map_or(client_id.is_empty(), |l| l == client_id);
        }
        let last = self.lits.len().saturating_sub(1);
        let mut pos = 0;
        for (i, lit) in self.lits.iter().enumerate() {
            let Some(rest) = client_id.get(pos..) else {
                return false;
            };
            if i == 0 && !self.star_start {
                if !rest.starts_with(lit.as_str()) {
                    return false;
                }
                pos += lit.len();
            } else if i == last && !self.star_end {
                return rest.len() >= lit.len() && rest.ends_with(lit.as_str());
            } else {
                match rest.find(lit.as_str()) {
                    Some(at) => pos += at + lit.len(),
                    None => return false,
                }
            }
        }
        // The last literal was anchored at the start only, or there were none.
        self.star_end || pos == client_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> ClientIdPattern {
        ClientIdPattern::build(&[Piece::Pattern(s)])
    }

    #[test]
    fn literal_only() {
        assert!(pat("dev-1").matches("dev-1"));
        assert!(!pat("dev-1").matches("dev-12"));
    }

    #[test]
    fn star_positions() {
        assert!(pat("*").matches(""));
        assert!(pat("*").matches("anything"));
        assert!(pat("alice-*").matches("alice-"));
        assert!(pat("alice-*").matches("alice-7"));
        assert!(!pat("alice-*").matches("bob-7"));
        assert!(pat("*-gw").matches("x-gw"));
        assert!(!pat("*-gw").matches("x-gwy"));
        assert!(pat("a*b*c").matches("abc"));
        assert!(pat("a*b*c").matches("axxbyyc"));
        assert!(!pat("a*b*c").matches("axxbyy"));
        assert!(!pat("ab*ba").matches("aba"));
        assert!(pat("**x").matches("x"));
    }

    #[test]
    fn substituted_star_is_literal() {
        let p = ClientIdPattern::build(&[Piece::Literal("a*"), Piece::Pattern("-*")]);
        assert!(p.matches("a*-1"));
        assert!(!p.matches("ab-1"));
    }

    #[test]
    fn widened_pattern_renders_with_star() {
        let p = ClientIdPattern::build(&[Piece::Pattern("gw-"), Piece::Star]);
        assert_eq!(p.as_str(), "gw-*");
        assert!(p.matches("gw-anything"));
    }
}
