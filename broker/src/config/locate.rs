//! Finds the line of a key in the config text, for errors that serde cannot
//! place: cross-field checks run after parsing, when spans are gone.
//!
//! This is a best-effort scanner for the block style people write config in
//! (and one-line flow mappings such as `policy: { on_deny: ignore }`). When a
//! path cannot be followed to the end it answers with the deepest part found,
//! so an error still points near its cause.

/// One step of a path into the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// 1-based line and column.
pub type Pos = (usize, usize);

/// A region of the text: lines `start..end`, and on the first line only the
/// text from column `col` (0-based) on.
#[derive(Clone, Copy, Debug)]
struct Region {
    start: usize,
    end: usize,
    col: usize,
}

/// The position of the deepest part of `path` found in `text`.
pub fn locate(text: &str, path: &[Seg<'_>]) -> Option<Pos> {
    let lines: Vec<&str> = text.lines().collect();
    let mut region = Region {
        start: 0,
        end: lines.len(),
        col: 0,
    };
    let mut found = None;
    let mut top = true;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => find_key(&lines, region, k, top),
            Seg::Index(i) => find_item(&lines, region, *i),
        };
        match next {
            Some((pos, sub)) => {
                found = Some(pos);
                region = sub;
            }
            None => break,
        }
        top = false;
    }
    found
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_filler(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// The byte offset of `key:` in `s` at a place a mapping key can start.
fn key_offset(s: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(rel) = s.get(from..).and_then(|rest| rest.find(key)) {
        let at = from + rel;
        let before_ok = match s[..at].chars().next_back() {
            None => true,
            Some(c) => matches!(c, ' ' | '{' | ',' | '-'),
        };
        let after = s[at + key.len()..].trim_start_matches(' ');
        if before_ok && after.starts_with(':') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

fn find_key(lines: &[&str], r: Region, key: &str, top: bool) -> Option<(Pos, Region)> {
    for n in r.start..r.end {
        let line = lines.get(n)?;
        if is_filler(line) {
            continue;
        }
        let col = if n == r.start {
            r.col.min(line.len())
        } else {
            0
        };
        let Some(rel) = line.get(col..).and_then(|s| key_offset(s, key)) else {
            continue;
        };
        let at = col + rel;
        // At the top level only a key in column 0 counts: the same name may
        // appear nested further down.
        if top && at != 0 {
            continue;
        }
        let end = block_end(lines, n, at, r.end);
        let sub = Region {
            start: n,
            end,
            col: at + key.len(),
        };
        return Some(((n + 1, at + 1), sub));
    }
    None
}

/// The line after the block that a key at column `key_col` on line `n` owns.
fn block_end(lines: &[&str], n: usize, key_col: usize, limit: usize) -> usize {
    let mut m = n + 1;
    while m < limit {
        let Some(line) = lines.get(m) else { break };
        if !is_filler(line) {
            let ind = indent(line);
            let seq_at_same = ind == key_col && line.trim_start().starts_with('-');
            if ind < key_col || (ind == key_col && !seq_at_same) {
                break;
            }
        }
        m += 1;
    }
    m
}

fn find_item(lines: &[&str], r: Region, index: usize) -> Option<(Pos, Region)> {
    let mut dash_col = None;
    let mut items = Vec::new();
    for n in r.start..r.end {
        let line = lines.get(n)?;
        if is_filler(line) {
            continue;
        }
        let from = if n == r.start {
            r.col.min(line.len())
        } else {
            0
        };
        let rest = line.get(from..)?;
        let trimmed = rest.trim_start();
        if !(trimmed.starts_with("- ") || trimmed == "-") {
            continue;
        }
        let col = from + (rest.len() - trimmed.len());
        match dash_col {
            None => dash_col = Some(col),
            Some(c) if c != col => continue,
            Some(_) => {}
        }
        items.push((n, col));
    }
    let &(line, col) = items.get(index)?;
    let end = items.get(index + 1).map_or(r.end, |&(next, _)| next);
    let sub = Region {
        start: line,
        end,
        col: col + 1,
    };
    Some(((line + 1, col + 1), sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment mentioning bind: here
data_dir: ./d
listeners:
  - name: a
    bind: \"127.0.0.1:1\"
  - name: b
    kind: tls
    bind: \"127.0.0.1:2\"
    client_auth: required
policy: { on_deny: ignore, poll_interval: 0s }
limits:
  max_session_expiry: 1d
";

    #[test]
    fn finds_nested_keys() {
        use Seg::*;
        assert_eq!(locate(DOC, &[Key("data_dir")]), Some((2, 1)));
        assert_eq!(locate(DOC, &[Key("listeners"), Index(0)]), Some((4, 3)));
        assert_eq!(
            locate(DOC, &[Key("listeners"), Index(1), Key("bind")]),
            Some((8, 5))
        );
        assert_eq!(
            locate(DOC, &[Key("listeners"), Index(1), Key("client_auth")]),
            Some((9, 5))
        );
        assert_eq!(
            locate(DOC, &[Key("policy"), Key("poll_interval")]),
            Some((10, 28))
        );
        assert_eq!(
            locate(DOC, &[Key("limits"), Key("max_session_expiry")]),
            Some((12, 3))
        );
    }

    #[test]
    fn falls_back_to_the_deepest_part_found() {
        use Seg::*;
        assert_eq!(
            locate(DOC, &[Key("listeners"), Index(0), Key("client_ca")]),
            Some((4, 3))
        );
        assert_eq!(locate(DOC, &[Key("nope")]), None);
    }

    #[test]
    fn sequence_items_at_the_key_column() {
        let doc = "listeners:\n- name: a\n  bind: x\n- name: b\n  bind: y\nlog: {}\n";
        let p = locate(
            doc,
            &[Seg::Key("listeners"), Seg::Index(1), Seg::Key("bind")],
        );
        assert_eq!(p, Some((5, 3)));
    }
}
