//! Update masks (AIP-134, AIP-161): which fields an update changes.
//!
//! - an explicit mask names fields; unknown fields, output-only fields and
//!   immutable fields are refused on `update_mask`, naming the path;
//! - `*` means every updatable field (a full replacement);
//! - no mask means the fields the request populates (output-only and
//!   immutable fields are then ignored, so that a read-modify-write of a
//!   whole resource works).

use std::collections::BTreeSet;

use slrgov_domain::Violations;

/// The fields an update changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mask(BTreeSet<String>);

impl Mask {
    /// True when `path` is in the mask.
    pub fn has(&self, path: &str) -> bool {
        self.0.contains(path)
    }

    /// The sub-paths of `prefix` in the mask (`features.lex_bots` ->
    /// `lex_bots` for prefix `features`).
    pub fn children<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter_map(move |path| {
            path.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
        })
    }
}

/// The longest mask accepted.
const MAX_PATHS: usize = 64;

/// Resolves a request's mask against the resource's updatable fields.
/// `populated` lists top-level fields with whether the request sets them
/// (for an implied mask); `immutable` lists fields with why they cannot
/// change.
pub fn parse(
    violations: &mut Violations,
    mask: Option<&prost_types::FieldMask>,
    updatable: &[&str],
    populated: &[(&str, bool)],
    immutable: &[(&str, &str)],
) -> Mask {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        let implied = populated
            .iter()
            .filter(|(field, set)| *set && updatable.contains(field))
            .map(|(field, _)| (*field).to_owned())
            .collect::<BTreeSet<_>>();
        if implied.is_empty() {
            violations.add(
                "update_mask",
                "is empty and the request sets no updatable field: nothing to change",
            );
        }
        return Mask(implied);
    }
    if paths.len() > MAX_PATHS {
        violations.add(
            "update_mask",
            format!("must name at most {MAX_PATHS} paths"),
        );
        return Mask::default();
    }
    let mut fields = BTreeSet::new();
    // The updatable fields are listed once, on the first unknown path, so
    // that an error's size does not grow with the list for every bad path.
    let mut listed = false;
    for (index, path) in paths.iter().enumerate() {
        let path = path.trim();
        if path == "*" {
            if paths.len() > 1 {
                violations.add(
                    format!("update_mask.paths[{index}]"),
                    "'*' must be the only path",
                );
            }
            fields.extend(
                updatable
                    .iter()
                    .filter(|f| !f.contains('.'))
                    .map(|f| (*f).to_owned()),
            );
        } else if updatable.contains(&path) {
            fields.insert(path.to_owned());
        } else if let Some((field, why)) = immutable.iter().find(|(f, _)| *f == path) {
            violations.add(
                format!("update_mask.paths[{index}]"),
                format!("'{field}' {why}"),
            );
        } else {
            let shown: String = path.chars().take(64).collect();
            let description = if listed {
                format!("'{shown}' is not an updatable field")
            } else {
                listed = true;
                format!(
                    "'{shown}' is not an updatable field (updatable: {})",
                    updatable.join(", ")
                )
            };
            violations.add(format!("update_mask.paths[{index}]"), description);
        }
    }
    Mask(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> prost_types::FieldMask {
        prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    const UPDATABLE: &[&str] = &["a", "b", "f", "f.x"];

    #[test]
    fn explicit_star_and_implied_masks() {
        let mut v = Violations::new();
        let m = parse(&mut v, Some(&mask(&["a", "f.x"])), UPDATABLE, &[], &[]);
        assert!(m.has("a") && !m.has("b"));
        assert_eq!(m.children("f").collect::<Vec<_>>(), ["x"]);
        let star = parse(&mut v, Some(&mask(&["*"])), UPDATABLE, &[], &[]);
        assert!(star.has("a") && star.has("b") && star.has("f") && !star.has("f.x"));
        let implied = parse(
            &mut v,
            None,
            UPDATABLE,
            &[("a", true), ("b", false), ("r", true)],
            &[],
        );
        assert!(implied.has("a") && !implied.has("b") && !implied.has("r"));
        assert!(v.is_empty());
    }

    #[test]
    fn bad_paths_are_named() {
        let mut v = Violations::new();
        parse(
            &mut v,
            Some(&mask(&["a", "nope", "r"])),
            UPDATABLE,
            &[],
            &[("r", "is immutable")],
        );
        let error = v.finish().expect_err("violations");
        let fields: Vec<_> = error.violations.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(fields, ["update_mask.paths[1]", "update_mask.paths[2]"]);
        assert!(error.violations[1].description.contains("immutable"));
        let mut empty = Violations::new();
        parse(&mut empty, None, UPDATABLE, &[("a", false)], &[]);
        assert!(empty.finish().is_err());
    }
}
